// Package domain is roomcast's event contract in Go: the CloudEvents
// envelope, the chat event types with their validation rules and limits, the
// errors of a violation, the Pusher channel and event names, and the payloads
// sent on them. It imports the standard library and its own internal/wire,
// which holds the JSON mechanics (scanning, string escapes, validation,
// canonical form) and imports no roomcast package.
package domain
