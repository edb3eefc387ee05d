// Package consumers turns Kafka messages into projected events: a Watermill
// router with the watermill-kafka subscriber decodes each message, hands it to
// the projection, and acknowledges it only once the projection has committed.
// Contract violations go to the dead-letter topic with their reason; transient
// failures are retried with backoff and never dead-lettered.
package consumers
