// Package testsupport gives tests real infrastructure: a fresh Postgres
// database per test (from one throwaway cluster per test binary, or from the
// server in TEST_DATABASE_URL) and a Kafka broker per test (in process, or the
// cluster in KAFKA_BROKERS).
//
// Packages that use Postgres should stop the shared cluster when their tests
// end by calling Main from TestMain:
//
//	func TestMain(m *testing.M) { testsupport.Main(m) }
//
// Without it the server still stops when the test binary exits (on Linux,
// via a parent-death signal), but its temporary directory is left behind.
package testsupport

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
)

// Main runs the package's tests, stops the servers they shared, and exits with the tests' status.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if err := stopSharedPostgres(); err != nil {
		os.Stderr.WriteString("testsupport: stop shared postgres: " + err.Error() + "\n")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Require skips the test with reason when ok is false, except under CI=true where it fails it, so a missing dependency never silently skips in CI.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if inCI() {
		t.Fatalf("%s (CI is set: a missing dependency fails the test instead of skipping it)", reason)
		return
	}
	t.Skip(reason)
}

// inCI reports whether CI is set to a true value (CI=true, as CI services set it).
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// randomSuffix returns 16 random hex digits for unique database and topic names.
func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand panics instead
	return hex.EncodeToString(b[:])
}
