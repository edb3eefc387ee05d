package testsupport

import (
	"testing"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/migrations"
	"github.com/roomcast/roomcast/projections"
)

// Database returns a fresh database with roomcast's migrations applied,
// opened with projections.Open (closed when the test ends), and its URL.
func Database(t testing.TB, maxConns int) (*gorm.DB, string) {
	t.Helper()
	url := Postgres(t)
	db, err := projections.Open(t.Context(), url, maxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = projections.Close(db) })
	sqlDB, err := projections.SQL(db)
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrations.New(sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db, url
}
