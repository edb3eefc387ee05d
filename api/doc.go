// Package api serves roomcast's read side to browsers: Pusher channel
// authorization from room membership, and the history a client catches up
// from, both answered by the tables the worker writes.
package api
