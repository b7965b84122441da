// Answers every request at once with a small JSON body: the least a Worker can do.
export default {
  async fetch() {
    return new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
  },
};
