// Package replay runs history again: into the read models (Rebuild from the
// event store, Kafka from the events topic's history), or to Pusher (Notify
// owes rooms' stored events again); DropRetired drops the read models a
// rebuild retired.
package replay
