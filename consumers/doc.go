// Package consumers turns Kafka messages into projected events: a Watermill
// router over KeyedSubscriber (a watermill-kafka-compatible subscriber that
// keeps many messages of a partition in flight, decoding each as it reads it)
// hands each event to the projection, and acknowledges it only once the
// projection has committed.
// Contract violations go to the dead-letter topic with their reason; transient
// failures are retried with backoff and never dead-lettered.
package consumers
