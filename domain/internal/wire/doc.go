// Package wire reads and writes the JSON of roomcast's events, fast and
// always as encoding/json would: it splits objects, unescapes and escapes
// strings, validates, canonicalises and walks numbers for package domain,
// which holds the rules; it imports no roomcast package.
package wire
