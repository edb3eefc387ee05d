// Package replay rebuilds the read models again: from the event store
// (Rebuild) or from the events topic's history (Kafka), and drops the read
// models a rebuild retired (DropRetired).
package replay
