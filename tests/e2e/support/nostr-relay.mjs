// A real Nostr relay on 127.0.0.1: npm `@nostr-relay/core` (NIP-01
// subscriptions, id and signature checks, ephemeral events broadcast
// without storage, replaceable events, NIP-40 expiration) served over
// `ws`. Only the storage is ours: an in-memory EventRepository.
import { WebSocketServer, WebSocket } from "ws";
import { NostrRelay } from "@nostr-relay/core";
import { EventRepository, EventType, EventUtils } from "@nostr-relay/common";

class MemoryRepository extends EventRepository {
  events = new Map();
  isSearchSupported() {
    return false;
  }
  upsert(event) {
    if (this.events.has(event.id)) return { isDuplicate: true };
    const type = EventUtils.getType(event.kind);
    if (type === EventType.REPLACEABLE || type === EventType.PARAMETERIZED_REPLACEABLE) {
      const d = type === EventType.PARAMETERIZED_REPLACEABLE ? EventUtils.extractDTagValue(event) : null;
      for (const old of this.events.values()) {
        const same = old.pubkey === event.pubkey && old.kind === event.kind && (d === null || EventUtils.extractDTagValue(old) === d);
        if (!same) continue;
        if (old.created_at > event.created_at) return { isDuplicate: true };
        this.events.delete(old.id);
      }
    }
    this.events.set(event.id, event);
    return { isDuplicate: false };
  }
  find(filter) {
    const found = [...this.events.values()]
      .filter((e) => EventUtils.isMatchingFilter(e, filter))
      .sort((a, b) => b.created_at - a.created_at);
    return filter.limit ? found.slice(0, filter.limit) : found;
  }
  async destroy() {}
}

/** Starts the relay; `url` is ws://127.0.0.1:<port>. */
export async function startRelay() {
  const relay = new NostrRelay(new MemoryRepository(), { logLevel: 3 /* ERROR */ });
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  const seen = []; // every client message, for the tests' eyes
  wss.on("connection", (ws) => {
    relay.handleConnection(ws);
    ws.on("message", async (data) => {
      let msg;
      try {
        msg = JSON.parse(data.toString());
      } catch {
        return;
      }
      if (!Array.isArray(msg)) return;
      seen.push(msg);
      try {
        await relay.handleMessage(ws, msg);
      } catch (e) {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(["NOTICE", `error: ${e.message}`]));
      }
    });
    ws.on("close", () => relay.handleDisconnect(ws));
    ws.on("error", () => {});
  });
  const { port } = wss.address();
  return {
    url: `ws://127.0.0.1:${port}`,
    port,
    /** The EVENT messages clients published, by kind. */
    published(kind) {
      return seen.filter((m) => m[0] === "EVENT" && m[1]?.kind === kind).map((m) => m[1]);
    },
    async stop() {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
      await relay.destroy();
    },
  };
}

/**
 * A WebSocket proxy in front of the relay. `dropAfterNext(kind)` makes it
 * forward the next EVENT of that kind to the relay and then cut the
 * client's connection at once, as a relay or network dropping the
 * connection right after taking the request would.
 */
export async function startRelayProxy(target) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  let dropKind = null;
  const drops = [];
  wss.on("connection", (client) => {
    const upstream = new WebSocket(target);
    const pending = [];
    upstream.on("open", () => {
      for (const m of pending.splice(0)) upstream.send(m);
    });
    upstream.on("message", (d) => client.readyState === WebSocket.OPEN && client.send(d.toString()));
    upstream.on("close", () => client.readyState === WebSocket.OPEN && client.close());
    upstream.on("error", () => client.terminate());
    client.on("message", (d) => {
      const text = d.toString();
      let msg = null;
      try {
        msg = JSON.parse(text);
      } catch {}
      if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
      else pending.push(text);
      if (dropKind !== null && msg?.[0] === "EVENT" && msg[1]?.kind === dropKind) {
        dropKind = null;
        drops.push(msg[1]);
        // The request went on to the relay; the client never hears back.
        client.terminate();
        setTimeout(() => upstream.close(), 1000);
      }
    });
    client.on("close", () => setTimeout(() => upstream.close(), 1000));
    client.on("error", () => {});
  });
  const { port } = wss.address();
  return {
    url: `ws://127.0.0.1:${port}`,
    dropAfterNext(kind) {
      dropKind = kind;
    },
    /** The events after which a connection was cut. */
    drops,
    async stop() {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}
