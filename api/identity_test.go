package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/api"
)

var testSecret = []byte("a-test-secret-of-at-least-32-bytes!!")

var testJWT = api.JWTSettings{Issuer: testIssuer, Audiences: []string{"roomcast-test"}, Leeway: 30 * time.Second}

// identify asks id who sends a request with token (none if "").
func identify(id api.Identity, token string) (string, error) {
	r := httptest.NewRequest(http.MethodPost, "/pusher/auth", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return id.UserID(r)
}

// refusedAs fails the test unless err is a refusal with label.
func refusedAs(t *testing.T, what string, user string, err error, label string) {
	t.Helper()
	var ref *api.Refusal
	switch {
	case err == nil:
		t.Errorf("%s: identified as %q, want refused (%s)", what, user, label)
	case !errors.As(err, &ref):
		t.Errorf("%s: %v, want a refusal (%s)", what, err, label)
	case ref.Label != label:
		t.Errorf("%s: refused as %s (%v), want %s", what, ref.Label, err, label)
	}
}

func newJWKSIdentity(t *testing.T, url string, s api.JWTSettings) api.Identity {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	id, err := api.NewJWKSIdentity(ctx, url, s, api.JWKSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestJWKSIdentityAcceptsTheProvidersTokens(t *testing.T) {
	key := newSigningKey(t, "k1")
	idp := newJWKSServer(t, key)
	id := newJWKSIdentity(t, idp.URL, testJWT)
	for what, token := range map[string]string{
		"a valid token":                 key.sign(t, claims("u-1")),
		"expired within the leeway":     key.sign(t, claims("u-1", "exp", time.Now().Add(-10*time.Second).Unix())),
		"valid soon, within the leeway": key.sign(t, claims("u-1", "nbf", time.Now().Add(10*time.Second).Unix())),
		"audience among several":        key.sign(t, claims("u-1", "aud", []string{"other-app", "roomcast-test"})),
		"no kid (every key of the set is tried)": func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("u-1"))
			s, _ := tok.SignedString(key.priv)
			return s
		}(),
	} {
		if user, err := identify(id, token); err != nil || user != "u-1" {
			t.Errorf("%s: got %q, %v; want u-1", what, user, err)
		}
	}
}

// TestJWKSIdentityRefusesBadTokens: every way a token can be wrong is
// refused, with a reason a client can act on.
func TestJWKSIdentityRefusesBadTokens(t *testing.T) {
	key := newSigningKey(t, "k1")
	attacker := newSigningKey(t, "k1") // another key under the provider's kid
	idp := newJWKSServer(t, key)
	id := newJWKSIdentity(t, idp.URL, testJWT)
	past, future := time.Now().Add(-2*time.Minute).Unix(), time.Now().Add(2*time.Minute).Unix()
	confused := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("u-1"))
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		what, token, label string
	}{
		{"no token", "", "missing"},
		{"not a JWT", "not-a-jwt", "malformed"},
		{"expired", key.sign(t, claims("u-1", "exp", past)), "expired"},
		{"not valid yet (nbf)", key.sign(t, claims("u-1", "nbf", future)), "not_yet_valid"},
		{"issued in the future (iat)", key.sign(t, claims("u-1", "iat", future)), "not_yet_valid"},
		{"wrong issuer", key.sign(t, claims("u-1", "iss", "https://evil.example.com/")), "issuer"},
		{"no issuer", key.sign(t, claims("u-1", "iss", nil)), "claim"},
		{"wrong audience", key.sign(t, claims("u-1", "aud", "another-app")), "audience"},
		{"no audience", key.sign(t, claims("u-1", "aud", nil)), "claim"},
		{"no exp", key.sign(t, claims("u-1", "exp", nil)), "claim"},
		{"unsigned (alg none)", unsigned(t, claims("u-1"), map[string]any{"kid": "k1"}), "signature"},
		{"unsigned (alg none), no kid", unsigned(t, claims("u-1"), nil), "signature"},
		{"signed with another key", attacker.sign(t, claims("u-1")), "signature"},
		{"HS256 with the public key's PEM as secret", confused(key.publicPEM(t)), "signature"},
		{"HS256 with the modulus as secret", confused(key.priv.N.Bytes()), "signature"},
		{"unknown kid", newSigningKey(t, "k9").sign(t, claims("u-1")), "unknown_key"},
		{"no user claim", key.sign(t, claims("u-1", "sub", nil)), "claim"},
		{"user claim not a string", key.sign(t, claims("u-1", "sub", 42)), "claim"},
	} {
		user, err := identify(id, tc.token)
		refusedAs(t, tc.what, user, err, tc.label)
	}
}

func TestSecretIdentityAcceptsOnlyHS256WithItsSecret(t *testing.T) {
	id := api.NewSecretIdentity(testSecret, api.JWTSettings{Leeway: 30 * time.Second, UserClaim: "uid"})
	if user, err := identify(id, hs256(t, testSecret, claims("ignored", "uid", "u-7", "iss", nil, "aud", nil))); err != nil || user != "u-7" {
		t.Errorf("a valid token: %q, %v; want u-7 from the uid claim", user, err)
	}
	rsaKey := newSigningKey(t, "k1")
	for _, tc := range []struct {
		what, token, label string
	}{
		{"another secret", hs256(t, []byte("another-secret-of-at-least-32-bytes!"), claims("u-1", "uid", "u-1")), "signature"},
		{"RS256", rsaKey.sign(t, claims("u-1", "uid", "u-1")), "signature"},
		{"unsigned (alg none)", unsigned(t, claims("u-1", "uid", "u-1"), nil), "signature"},
		{"HS512 with the secret", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, claims("u-1", "uid", "u-1")).SignedString(testSecret)
			return s
		}(), "signature"},
		{"expired", hs256(t, testSecret, claims("u-1", "uid", "u-1", "exp", time.Now().Add(-time.Minute).Unix())), "expired"},
		{"no uid claim (sub is not it)", hs256(t, testSecret, claims("u-1")), "claim"},
	} {
		user, err := identify(id, tc.token)
		refusedAs(t, tc.what, user, err, tc.label)
	}
}

// TestJWKSKeyRotation: the key set is cached (verifying fetches nothing);
// a token signed with a key the provider just published fetches the set
// once and passes; the key it retired stops verifying; tokens with
// made-up kids cannot make roomcast fetch the set over and over.
func TestJWKSKeyRotation(t *testing.T) {
	old, next := newSigningKey(t, "2026-11"), newSigningKey(t, "2026-12")
	idp := newJWKSServer(t, old)
	id := newJWKSIdentity(t, idp.URL, testJWT)
	for range 5 {
		if _, err := identify(id, old.sign(t, claims("u-1"))); err != nil {
			t.Fatalf("token of the current key: %v", err)
		}
	}
	if n := idp.fetches.Load(); n != 1 {
		t.Errorf("%d fetches of the key set for 5 tokens of one key, want 1 (cached)", n)
	}

	idp.rotate(next)
	if user, err := identify(id, next.sign(t, claims("u-1"))); err != nil || user != "u-1" {
		t.Fatalf("token of the new key: %q, %v; want u-1 after fetching the new set", user, err)
	}
	if n := idp.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after the rotation, want 2", n)
	}
	start := time.Now()
	user, err := identify(id, old.sign(t, claims("u-1")))
	refusedAs(t, "token of the retired key", user, err, "unknown_key")
	for i := range 5 {
		user, err := identify(id, newSigningKey(t, "made-up-"+string(rune('a'+i))).sign(t, claims("u-1")))
		refusedAs(t, "token of a made-up kid", user, err, "unknown_key")
	}
	if n := idp.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after 6 tokens of unknown kids within the refresh limit, want still 2", n)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusing 6 tokens of unknown kids took %v: a request must not wait for the refresh limit", d)
	}
}

// TestJWKSIdentityStartsWithoutItsProvider: a provider down at start is
// not fatal; the key set is fetched once it answers.
func TestJWKSIdentityStartsWithoutItsProvider(t *testing.T) {
	key := newSigningKey(t, "k1")
	idp := newJWKSServer(t) // no keys yet: as good as down
	id := newJWKSIdentity(t, idp.URL, testJWT)
	idp.rotate(key)
	if user, err := identify(id, key.sign(t, claims("u-1"))); err != nil || user != "u-1" {
		t.Errorf("token once the provider publishes its key: %q, %v; want u-1", user, err)
	}
}

func TestHeaderIdentity(t *testing.T) {
	id := api.HeaderIdentity{Header: "X-User-Id"}
	for _, tc := range []struct {
		what   string
		values []string
		want   string
		label  string
	}{
		{"one value", []string{"u-1"}, "u-1", ""},
		{"no header", nil, "", "missing"},
		{"empty", []string{""}, "", "missing"},
		{"two values (one may be the client's)", []string{"u-1", "u-2"}, "", "malformed"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, v := range tc.values {
			r.Header.Add("X-User-Id", v)
		}
		user, err := id.UserID(r)
		if tc.label == "" {
			if err != nil || user != tc.want {
				t.Errorf("%s: %q, %v; want %q", tc.what, user, err, tc.want)
			}
			continue
		}
		refusedAs(t, tc.what, user, err, tc.label)
	}
}
