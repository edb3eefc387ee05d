import type { HistoryApi } from './api.js';
import { RoomcastError } from './errors.js';
import { roomEventNames, type RoomEvent, type RoomEventName } from './types.js';

/** How a Sequencer starts, fetches and retries. */
export interface SequencerOptions {
  roomId: string;
  api: HistoryApi;
  /** Receives the room's events: seq last+1, last+2, ... each once. */
  deliver: (event: RoomEvent) => void;
  onError?: (err: RoomcastError) => void;
  /** The seq the app already has: events after it are handed over (0, the
   * default, hands over the room's whole history). `'latest'`: only events
   * after the room's last seq when the first catch-up runs. */
  afterSeq?: number | 'latest';
  /** Events asked per history page (default 100). */
  pageSize?: number;
  /** Backoff of failed history calls: from retryMinMs (default 250) doubling
   * up to retryMaxMs (default 30000), with jitter. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Tries at the full text of a truncated message before the event is
   * handed over truncated (default 3). */
  messageAttempts?: number;
}

interface Pending {
  name: string;
  data: unknown;
}

const names: ReadonlySet<string> = new Set(roomEventNames);

/**
 * Sequencer turns one room's deliveries, which may come late, twice, out of
 * order or not at all, into the room's events in seq order, each once: live
 * events ahead of the next seq wait while the gap is fetched from the
 * history API, and a catch-up (after a (re)subscription) fetches whatever
 * came while the client was not listening.
 *
 * All the work runs in one loop (pump), so the app's handler is never
 * called concurrently and seqs are handed over strictly one after another.
 */
export class Sequencer {
  private last: number | null;
  private readonly pending = new Map<number, Pending>();
  private fillWanted = false;
  private running = false;
  private closed = false;
  private wake: (() => void) | null = null;
  private waiters: Array<() => void> = [];
  private readonly abort = new AbortController();
  private readonly pageSize: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly messageAttempts: number;

  constructor(private readonly opts: SequencerOptions) {
    const after = opts.afterSeq ?? 0;
    if (after !== 'latest' && !(Number.isSafeInteger(after) && after >= 0)) {
      throw new TypeError(`afterSeq must be a whole number >= 0 or 'latest', not ${String(after)}`);
    }
    this.last = after === 'latest' ? null : after;
    this.pageSize = opts.pageSize ?? 100;
    this.retryMinMs = opts.retryMinMs ?? 250;
    this.retryMaxMs = opts.retryMaxMs ?? 30000;
    this.messageAttempts = opts.messageAttempts ?? 3;
  }

  /** The seq of the last event handed over (0 before any; with `'latest'`,
   * the room's last seq once known). */
  get lastSeq(): number {
    return this.last ?? 0;
  }

  /** Takes a live delivery. Events at or below lastSeq, or already waiting,
   * are duplicates and dropped; one past the next seq waits for the gap. */
  live(name: string, data: unknown): void {
    if (this.closed) {
      return;
    }
    const seq = (data as { seq?: unknown } | null)?.seq;
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
      this.report(new RoomcastError('gap', `${name} without a valid seq: dropped`, { roomId: this.opts.roomId }));
      return;
    }
    if ((this.last !== null && seq <= this.last) || this.pending.has(seq)) {
      return;
    }
    this.pending.set(seq, { name, data });
    void this.pump();
  }

  /** Fetches the events after lastSeq from the history API and hands them
   * over; resolves once the sequencer has nothing more to do (failures go to
   * onError and are retried with backoff, a fatal one ends the attempt). */
  catchUp(): Promise<void> {
    if (this.closed) {
      return Promise.resolve();
    }
    this.fillWanted = true;
    this.wake?.();
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    void this.pump();
    return done;
  }

  /** Resolves once no work is in progress. */
  idle(): Promise<void> {
    if (!this.running) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Stops: nothing more is handed over, calls in flight are aborted. */
  close(): void {
    this.closed = true;
    this.pending.clear();
    this.abort.abort();
    this.wake?.();
  }

  private async pump(): Promise<void> {
    if (this.running || this.closed) {
      return;
    }
    this.running = true;
    let failures = 0;
    try {
      while (!this.closed) {
        if (this.last === null) {
          // 'latest': the room's last seq is where this client starts.
          try {
            const page = await this.opts.api.events(this.opts.roomId, 0, 1, this.abort.signal);
            this.advanceTo(page.lastSeq);
            failures = 0;
          } catch (err) {
            if (!(await this.retryAfter(err, failures++))) {
              return;
            }
          }
          continue;
        }
        const next = this.pending.get(this.last + 1);
        if (next) {
          await this.hand(next.name, next.data, this.last + 1);
          continue;
        }
        if (!this.fillWanted && this.pending.size === 0) {
          return;
        }
        const wanted = this.fillWanted;
        this.fillWanted = false;
        try {
          await this.fill();
          if (this.pending.size > 0 && !this.pending.has(this.last + 1) && !this.fillWanted) {
            // Live events are ahead of what history holds yet (a lagging
            // read): ask again after a pause.
            await this.sleep(this.backoff(failures++));
          } else {
            failures = 0;
          }
        } catch (err) {
          this.fillWanted ||= wanted;
          if (!(await this.retryAfter(err, failures++))) {
            return;
          }
        }
      }
    } finally {
      this.running = false;
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) {
        w();
      }
    }
  }

  /** Pages through the history after lastSeq until it says no more follow. */
  private async fill(): Promise<void> {
    for (;;) {
      const page = await this.opts.api.events(this.opts.roomId, this.last!, this.pageSize, this.abort.signal);
      const entries = [...page.events].sort((a, b) => a.seq - b.seq);
      for (const e of entries) {
        if (this.closed) {
          return;
        }
        // Live events the page has not reached yet go first.
        for (let p = this.pending.get(this.last! + 1); p && this.last! + 1 < e.seq; p = this.pending.get(this.last! + 1)) {
          await this.hand(p.name, p.data, this.last! + 1);
        }
        if (e.seq <= this.last!) {
          continue;
        }
        if (e.seq > this.last! + 1) {
          this.report(
            new RoomcastError('gap', `history skips seq ${this.last! + 1}..${e.seq - 1}`, { roomId: this.opts.roomId }),
          );
        }
        await this.hand(e.event, e.data, e.seq);
      }
      if (!page.more || entries.length === 0) {
        return;
      }
    }
  }

  /** Hands one event over as seq (its full text first if it was truncated). */
  private async hand(name: string, data: unknown, seq: number): Promise<void> {
    let payload = data as Record<string, unknown>;
    if (payload?.truncated === true && typeof payload.id === 'string' && (name === 'new-message' || name === 'message-edited')) {
      payload = await this.fullText(payload, payload.id);
    }
    if (this.closed) {
      return;
    }
    this.advanceTo(seq);
    if (!names.has(name)) {
      return; // a seq-bearing event this client does not know: it still counts
    }
    try {
      this.opts.deliver({ event: name as RoomEventName, roomId: this.opts.roomId, seq, data: payload } as unknown as RoomEvent);
    } catch (err) {
      this.report(new RoomcastError('handler', `the room handler threw on seq ${seq}: ${String(err)}`, { roomId: this.opts.roomId, cause: err }));
    }
  }

  private advanceTo(seq: number): void {
    this.last = Math.max(this.last ?? 0, seq);
    for (const s of this.pending.keys()) {
      if (s <= this.last) {
        this.pending.delete(s);
      }
    }
  }

  /** The payload with the message's full text, or as it is (still
   * truncated) when the message cannot be fetched. */
  private async fullText(payload: Record<string, unknown>, id: string): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      try {
        const m = await this.opts.api.message(this.opts.roomId, id, this.abort.signal);
        const full: Record<string, unknown> = { ...payload, content: m.content };
        delete full.truncated;
        if (m.deleted) {
          full.redacted = true;
        }
        return full;
      } catch (err) {
        if (this.closed) {
          return payload;
        }
        const e = asRoomcastError(err, 'message', this.opts.roomId);
        if (e.fatal || attempt + 1 >= this.messageAttempts) {
          this.report(new RoomcastError('message', `full text of message ${id} unavailable, handed over truncated: ${e.message}`, { status: e.status, roomId: this.opts.roomId, cause: err }));
          return payload;
        }
        await this.sleep(this.backoff(attempt));
      }
    }
  }

  /** Reports a failed history call; waits before the next try and says
   * whether there is one (not after a fatal error or close). */
  private async retryAfter(err: unknown, failures: number): Promise<boolean> {
    if (this.closed) {
      return false;
    }
    const e = asRoomcastError(err, 'history', this.opts.roomId);
    this.report(e);
    if (e.fatal) {
      return false;
    }
    await this.sleep(this.backoff(failures));
    return !this.closed;
  }

  private backoff(failures: number): number {
    const base = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(failures, 20));
    return base * (0.8 + Math.random() * 0.4);
  }

  /** Waits ms, or less when catchUp or close wakes the loop. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        if (self.wake === done) {
          self.wake = null;
        }
        resolve();
      }
      this.wake = done;
    });
  }

  private report(err: RoomcastError): void {
    try {
      this.opts.onError?.(err);
    } catch {
      // an error handler that throws must not stop the room
    }
  }
}

function asRoomcastError(err: unknown, kind: 'history' | 'message', roomId: string): RoomcastError {
  return err instanceof RoomcastError ? err : new RoomcastError(kind, String(err), { roomId, cause: err });
}
