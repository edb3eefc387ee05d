// Package domain holds roomcast's event contract in plain Go: the CloudEvents
// envelope, the chat event types and their validation, the Pusher channel and
// event names, and the payloads sent on them. It imports no vendor package:
// the contract in DESIGN.md is written down here once and every other package
// uses it.
package domain
