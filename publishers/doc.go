// Package publishers owns fan-out to Pusher: it reads what the outbox owes,
// packs it into as few calls as Pusher's limits allow (batches of up to 10
// events, triggers of up to 100 channels, a call of its own to terminate a
// user's connections), keeps each room's seq order across failures, and
// settles every delivery as accepted, retried or parked.
package publishers
