package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/config"
)

const goodSecret = "0123456789abcdef0123456789abcdef-long-enough"

// apiEnv is an environment `roomcast api` starts with, changed by kv
// (name, value pairs; "" unsets).
func apiEnv(kv ...string) config.Getenv {
	m := map[string]string{
		"DATABASE_URL": "postgres://roomcast@localhost/roomcast",
		"PUSHER_KEY":   "key", "PUSHER_SECRET": "pusher-secret",
		"API_JWT_SECRET": goodSecret,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(name string) string { return m[name] }
}

func TestConfigAPIDefaults(t *testing.T) {
	c, err := config.Load(apiEnv(), config.Database, config.API)
	if err != nil {
		t.Fatal(err)
	}
	want := config.APIConfig{Addr: ":8081", JWKSRefresh: time.Hour, JWTSecret: goodSecret, JWTLeeway: 30 * time.Second, JWTUserClaim: "sub"}
	if !reflect.DeepEqual(c.API, want) {
		t.Errorf("API settings %+v, want %+v", c.API, want)
	}
	if c.API.IdentityMode() != "jwt-secret" {
		t.Errorf("identity mode %q, want jwt-secret", c.API.IdentityMode())
	}
}

func TestConfigAPIReadsEverySetting(t *testing.T) {
	c, err := config.Load(apiEnv("API_JWT_SECRET", "", "API_ADDR", "127.0.0.1:9000",
		"API_JWKS_URL", "https://idp.example.com/.well-known/jwks.json", "API_JWKS_REFRESH", "10m",
		"API_JWT_ISSUER", "https://idp.example.com/", "API_JWT_AUDIENCE", "chat, chat-mobile",
		"API_JWT_LEEWAY", "0", "API_JWT_USER_CLAIM", "https://example.com/user_id"), config.API)
	if err != nil {
		t.Fatal(err)
	}
	want := config.APIConfig{Addr: "127.0.0.1:9000", JWKSURL: "https://idp.example.com/.well-known/jwks.json", JWKSRefresh: 10 * time.Minute,
		JWTIssuer: "https://idp.example.com/", JWTAudiences: []string{"chat", "chat-mobile"}, JWTUserClaim: "https://example.com/user_id"}
	if !reflect.DeepEqual(c.API, want) {
		t.Errorf("API settings %+v, want %+v", c.API, want)
	}
}

// TestConfigAPIErrorsNameTheSetting: every way to get the identity wrong
// is refused at start with an error that names the setting to fix, and
// the secret's value never appears in it.
func TestConfigAPIErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"no identity mode", []string{"API_JWT_SECRET", ""}, "API_JWKS_URL, API_JWT_SECRET or API_TRUSTED_USER_HEADER: one is required"},
		{"two identity modes", []string{"API_TRUSTED_USER_HEADER", "X-User-Id"}, "API_JWT_SECRET: set only one identity mode, not API_JWT_SECRET and API_TRUSTED_USER_HEADER"},
		{"short secret", []string{"API_JWT_SECRET", "hunter2hunter2"}, "API_JWT_SECRET: 14 bytes, at least 32"},
		{"JWKS without issuer", []string{"API_JWT_SECRET", "", "API_JWKS_URL", "https://idp.example.com/jwks"}, "API_JWT_ISSUER: required with API_JWKS_URL"},
		{"JWKS not a URL", []string{"API_JWT_SECRET", "", "API_JWKS_URL", "idp.example.com/jwks", "API_JWT_ISSUER", "i"}, "API_JWKS_URL: \"idp.example.com/jwks\" is not an https:// URL"},
		{"JWKS in clear text", []string{"API_JWT_SECRET", "", "API_JWKS_URL", "http://idp.example.com/jwks", "API_JWT_ISSUER", "i"}, "API_JWKS_URL: \"http://idp.example.com/jwks\" is plain http to another host"},
		{"JWKS with credentials", []string{"API_JWT_SECRET", "", "API_JWKS_URL", "https://u:p@idp.example.com/jwks", "API_JWT_ISSUER", "i"}, "API_JWKS_URL: must not carry credentials"},
		{"bad leeway", []string{"API_JWT_LEEWAY", "soon"}, "API_JWT_LEEWAY: \"soon\" is not a duration"},
		{"negative leeway", []string{"API_JWT_LEEWAY", "-1s"}, "API_JWT_LEEWAY: \"-1s\" is not a duration"},
		{"huge leeway", []string{"API_JWT_LEEWAY", "1h"}, "API_JWT_LEEWAY: 1h0m0s is more than 5m0s"},
		{"bad refresh", []string{"API_JWKS_REFRESH", "0"}, "API_JWKS_REFRESH: \"0\" is not a positive duration"},
		{"bad insecure flag", []string{"API_JWKS_ALLOW_INSECURE", "maybe"}, "API_JWKS_ALLOW_INSECURE: \"maybe\" is not true or false"},
		{"bad header name", []string{"API_JWT_SECRET", "", "API_TRUSTED_USER_HEADER", "X User"}, "API_TRUSTED_USER_HEADER: \"X User\" is not an HTTP header name"},
		{"credential header", []string{"API_JWT_SECRET", "", "API_TRUSTED_USER_HEADER", "authorization"}, "API_TRUSTED_USER_HEADER: \"authorization\" carries credentials"},
		{"issuer with a header", []string{"API_JWT_SECRET", "", "API_TRUSTED_USER_HEADER", "X-User-Id", "API_JWT_ISSUER", "i"}, "API_JWT_ISSUER: applies to bearer tokens"},
		{"audience with a header", []string{"API_JWT_SECRET", "", "API_TRUSTED_USER_HEADER", "X-User-Id", "API_JWT_AUDIENCE", "a"}, "API_JWT_AUDIENCE: applies to bearer tokens"},
		{"bad address", []string{"API_ADDR", "8081"}, "API_ADDR: \"8081\" is not host:port"},
		{"no Pusher key", []string{"PUSHER_KEY", ""}, "PUSHER_KEY: required"},
		{"no Pusher secret", []string{"PUSHER_SECRET", ""}, "PUSHER_SECRET: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(apiEnv(tc.env...), config.Database, config.API)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			for _, secret := range []string{"hunter2hunter2", goodSecret, "pusher-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

// TestConfigAPIAcceptsWhatItShould: loopback JWKS over http (a sidecar or
// a test), an explicitly accepted insecure JWKS, and a trusted header.
func TestConfigAPIAcceptsWhatItShould(t *testing.T) {
	for _, env := range [][]string{
		{"API_JWT_SECRET", "", "API_JWKS_URL", "http://127.0.0.1:8899/jwks", "API_JWT_ISSUER", "i"},
		{"API_JWT_SECRET", "", "API_JWKS_URL", "http://localhost/jwks", "API_JWT_ISSUER", "i"},
		{"API_JWT_SECRET", "", "API_JWKS_URL", "http://keycloak:8080/certs", "API_JWT_ISSUER", "i", "API_JWKS_ALLOW_INSECURE", "true"},
		{"API_JWT_SECRET", "", "API_TRUSTED_USER_HEADER", "X-Roomcast-User"},
		{"API_JWT_SECRET", " spaces around count " + goodSecret},
	} {
		if _, err := config.Load(apiEnv(env...), config.API); err != nil {
			t.Errorf("%q: %v", env, err)
		}
	}
}

// TestConfigAPIOnlyWhenNeeded: the other commands do not ask for an
// identity mode.
func TestConfigAPIOnlyWhenNeeded(t *testing.T) {
	if _, err := config.Load(apiEnv("API_JWT_SECRET", ""), config.Database); err != nil {
		t.Errorf("a command that does not need the API: %v", err)
	}
}
