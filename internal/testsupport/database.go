package testsupport

import (
	"testing"

	"gorm.io/gorm"

	"github.com/roomcast/roomcast/projections"
)

// Database returns a fresh database with roomcast's migrations applied,
// opened with projections.Open (closed when the test ends), and its URL.
func Database(t testing.TB, maxConns int) (*gorm.DB, string) {
	t.Helper()
	url := Postgres(t)
	mdb, m, err := projections.OpenForMigrations(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Up(t.Context())
	_ = projections.Close(mdb)
	if err != nil {
		t.Fatal(err)
	}
	db, err := projections.Open(t.Context(), url, maxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = projections.Close(db) })
	return db, url
}
