/** What failed: a channel authorization (`subscription`), a history call
 * (`history`), the full text of a truncated message (`message`), history
 * that skips seqs it should hold (`gap`), or the app's own handler
 * (`handler`). */
export type RoomcastErrorKind = 'subscription' | 'history' | 'message' | 'gap' | 'handler';

/** An error the client reports through RoomHandlers.onError. The client goes
 * on after each (it retries history calls with backoff) unless `fatal`. */
export class RoomcastError extends Error {
  readonly kind: RoomcastErrorKind;
  /** The HTTP status, when the API answered. */
  readonly status?: number;
  /** The room concerned, when there is one. */
  readonly roomId?: string;
  /** True when the client stopped trying: a refused subscription, or a
   * history call answered 403 (not a member). */
  readonly fatal: boolean;

  constructor(kind: RoomcastErrorKind, message: string, opts: { status?: number; roomId?: string; fatal?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RoomcastError';
    this.kind = kind;
    this.status = opts.status;
    this.roomId = opts.roomId;
    this.fatal = opts.fatal ?? false;
  }
}
