// Package projections owns roomcast's Postgres state: it projects events
// into the event store, the read models and the outbox of Pusher deliveries.
package projections
