package migrations

import (
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestDroppedTables(t *testing.T) {
	src, err := fs.ReadFile(files, "00001_event_store.sql")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := DroppedTables(string(src)), []string{"deliveries", "room_members", "messages", "rooms", "events"}; !slices.Equal(got, want) {
		t.Errorf("00001 drops %v, want %v", got, want)
	}
	cases := map[string][]string{
		"-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE IF EXISTS a, \"b\" CASCADE;\n": {"a", "b"},
		"-- +goose Up\nDROP TABLE x;\n-- +goose Down\nCREATE TABLE x (id int);\n":                          nil,
		"-- +goose Down\n-- DROP TABLE commented;\nALTER TABLE t DROP COLUMN c;\ndrop table\n  s.t\n":      {"s.t"},
	}
	for src, want := range cases {
		if got := DroppedTables(src); !slices.Equal(got, want) {
			t.Errorf("DroppedTables(%q) = %v, want %v", src, got, want)
		}
	}
	// Every migration: each DROP TABLE of a Down section is found.
	anyDrop := regexp.MustCompile(`(?i)\bDROP\s+TABLE\b`)
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := fs.ReadFile(files, e.Name())
		_, down, _ := strings.Cut(string(b), "-- +goose Down")
		down = regexp.MustCompile(`--[^\n]*`).ReplaceAllString(down, "")
		if n := len(anyDrop.FindAllString(down, -1)); n > len(DroppedTables(string(b))) {
			t.Errorf("%s: %d DROP TABLE statements in its Down section, DroppedTables finds %v", e.Name(), n, DroppedTables(string(b)))
		}
	}
}
