// A scripted room for the Sequencer's tests: the history API's answers come
// from an in-memory log, with failures and lag injected on demand.
import { RoomcastError } from '../../dist/index.js';

export const ROOM = 'room-1';

/** Payload of the seq-th event of a scripted room (every 5th a message edit). */
export function payload(seq, extra = {}) {
  if (seq % 5 === 0) {
    return { event: 'message-edited', data: { id: `m-${seq - 1}`, content: `edit ${seq}`, editedAt: '2026-11-27T08:00:00.000Z', roomId: ROOM, seq, ...extra } };
  }
  return {
    event: 'new-message',
    data: { id: `m-${seq}`, content: `text ${seq}`, authorId: 'u-1', authorName: 'Ada', authorAvatar: null, createdAt: '2026-11-27T08:00:00.000Z', roomId: ROOM, seq, ...extra },
  };
}

export class ScriptedHistory {
  constructor(n = 0) {
    this.log = [];
    this.full = new Map(); // messageId -> full content
    this.calls = [];
    this.fail = []; // queue of errors (or null) the next calls throw
    this.visible = Infinity; // history shows only seq <= visible (a lagging read)
    for (let s = 1; s <= n; s++) this.add(payload(s));
  }

  add({ event, data }) {
    this.log.push({ seq: data.seq, event, data });
  }

  async events(roomId, afterSeq, limit) {
    this.calls.push(['events', roomId, afterSeq, limit]);
    await tick();
    const f = this.fail.shift();
    if (f) throw f;
    const shown = this.log.filter((e) => e.seq <= this.visible);
    const after = shown.filter((e) => e.seq > afterSeq);
    const page = after.slice(0, limit);
    const lastSeq = shown.length ? shown[shown.length - 1].seq : 0;
    return { roomId, lastSeq, more: after.length > page.length, events: page.map((e) => structuredClone(e)) };
  }

  async message(roomId, id) {
    this.calls.push(['message', roomId, id]);
    await tick();
    const f = this.fail.shift();
    if (f) throw f;
    if (!this.full.has(id)) throw new RoomcastError('message', 'not found', { status: 404, fatal: true });
    return { id, roomId, content: this.full.get(id), deleted: false };
  }
}

export function tick() {
  return new Promise((r) => setImmediate(r));
}

export function seqs(events) {
  return events.map((e) => e.seq);
}

export function range(a, b) {
  const out = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}
