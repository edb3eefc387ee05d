// Package e2e tests roomcast from the browser's side: the client library
// (clients/js, built) and pusher-js in Node, connected to a real soketi,
// authorized and caught up by the API, fed by the worker from Kafka and
// Postgres.
package e2e

import (
	"testing"

	"github.com/roomcast/roomcast/internal/testsupport"
)

func TestMain(m *testing.M) { testsupport.Main(m) }
