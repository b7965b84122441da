// Waiting for something the gateway does in the background (a queue drain,
// a relay round trip), bounded, with the thing named in the error.

/** Polls `f` every `everyMs` until it returns something truthy; throws after `ms`. */
export async function until(what, f, ms = 60_000, everyMs = 300) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
