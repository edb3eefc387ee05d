// Package consumers is roomcast's Kafka side: it consumes events into the
// projection, acknowledging each once committed, and dead-letters those that
// break the contract.
package consumers
