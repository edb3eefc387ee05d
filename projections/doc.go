// Package projections owns roomcast's Postgres state: the append-only event
// store, the read models (messages, room_members, rooms) and the outbox of
// Pusher deliveries. Each accepted event is projected in one transaction that
// records it, applies it and writes what it owes to Pusher, so that the Kafka
// offset can be committed once that transaction has. It is the only package
// besides cmd that imports gorm.
package projections
