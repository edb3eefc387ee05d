// @roomcast/client: a room's roomcast events in seq order, over pusher-js.
export { RoomcastClient, Room } from './client.js';
export type { ClientOptions, PusherOptions, RoomHandlers, RoomOptions } from './client.js';
export { Sequencer } from './sequencer.js';
export type { SequencerOptions } from './sequencer.js';
export { Api } from './api.js';
export type { TokenGetter, HistoryApi, ChannelAuth, UserAuth } from './api.js';
export { RoomcastError } from './errors.js';
export type { RoomcastErrorKind } from './errors.js';
export { roomEventNames } from './types.js';
export type {
  RoomEvent,
  RoomEventName,
  RoomEventData,
  NewMessage,
  MessageEdited,
  MessageDeleted,
  UserJoined,
  UserLeft,
  Notification,
  Member,
  FeedEntry,
  EventsPage,
  Message,
} from './types.js';
