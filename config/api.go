package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// APIConfig is the configuration of `roomcast api` (the API_* settings):
// where it listens and how it tells who sends a request. Exactly one of
// JWKSURL, JWTSecret and TrustedUserHeader is set (see Load's API need).
type APIConfig struct {
	Addr string // API_ADDR

	JWKSURL           string        // API_JWKS_URL: bearer JWTs signed by an identity provider's keys
	JWKSRefresh       time.Duration // API_JWKS_REFRESH: how often the key set is fetched again
	JWKSAllowInsecure bool          // API_JWKS_ALLOW_INSECURE: accept an http:// key set off this host
	JWTSecret         string        // API_JWT_SECRET: bearer JWTs signed with HS256 and this secret
	JWTIssuer         string        // API_JWT_ISSUER: the iss a token must carry ("" with a secret: any)
	JWTAudiences      []string      // API_JWT_AUDIENCE: one of these in aud (empty: not checked)
	JWTLeeway         time.Duration // API_JWT_LEEWAY: clock skew allowed on exp, nbf and iat
	JWTUserClaim      string        // API_JWT_USER_CLAIM: the claim holding the user id

	TrustedUserHeader string // API_TRUSTED_USER_HEADER: a gateway in front already identified the user

	CORSOrigins []string // API_CORS_ORIGINS: web origins whose pages may call the API (none: no CORS headers)
}

// Defaults and bounds of the API settings.
const (
	DefaultAPIAddr      = ":8081"
	DefaultJWKSRefresh  = time.Hour
	DefaultJWTLeeway    = 30 * time.Second
	MaxJWTLeeway        = 5 * time.Minute
	MinJWTSecretBytes   = 32 // RFC 7518 3.2: an HS256 key at least as long as the hash
	DefaultJWTUserClaim = "sub"
)

// IdentityMode names the way roomcast api identifies a request.
func (a APIConfig) IdentityMode() string {
	switch {
	case a.JWKSURL != "":
		return "jwks"
	case a.JWTSecret != "":
		return "jwt-secret"
	case a.TrustedUserHeader != "":
		return "trusted-header"
	}
	return ""
}

// loadAPI reads the API settings. The errors it returns are those of
// malformed values; validate checks that they make one identity mode.
func loadAPI(env Getenv) (APIConfig, []error) {
	var errs []error
	get := func(name, def string) string {
		if v := strings.TrimSpace(env(name)); v != "" {
			return v
		}
		return def
	}
	duration := func(name string, def, atMost time.Duration, zeroOK bool) time.Duration {
		v := get(name, "")
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d < 0 || d == 0 && !zeroOK:
			what := "a positive duration such as 1h"
			if zeroOK {
				what = "a duration such as 30s (0 for none)"
			}
			errs = append(errs, fmt.Errorf("%s: %q is not %s", name, v, what))
		case atMost > 0 && d > atMost:
			errs = append(errs, fmt.Errorf("%s: %s is more than %s", name, d, atMost))
		}
		return d
	}
	a := APIConfig{
		Addr:              get("API_ADDR", DefaultAPIAddr),
		JWKSURL:           get("API_JWKS_URL", ""),
		JWKSRefresh:       duration("API_JWKS_REFRESH", DefaultJWKSRefresh, 0, false),
		JWTSecret:         env("API_JWT_SECRET"), // as it is: spaces may be part of it
		JWTIssuer:         get("API_JWT_ISSUER", ""),
		JWTLeeway:         duration("API_JWT_LEEWAY", DefaultJWTLeeway, MaxJWTLeeway, true),
		JWTUserClaim:      get("API_JWT_USER_CLAIM", DefaultJWTUserClaim),
		TrustedUserHeader: get("API_TRUSTED_USER_HEADER", ""),
	}
	switch v := strings.ToLower(get("API_JWKS_ALLOW_INSECURE", "false")); v {
	case "true", "1":
		a.JWKSAllowInsecure = true
	case "false", "0":
	default:
		errs = append(errs, fmt.Errorf("API_JWKS_ALLOW_INSECURE: %q is not true or false", v))
	}
	for aud := range strings.SplitSeq(get("API_JWT_AUDIENCE", ""), ",") {
		if aud = strings.TrimSpace(aud); aud != "" {
			a.JWTAudiences = append(a.JWTAudiences, aud)
		}
	}
	a.CORSOrigins = corsOrigins(get("API_CORS_ORIGINS", ""), &errs)
	return a, errs
}

// corsOrigins reads API_CORS_ORIGINS: exact origins, as a browser sends
// them in its Origin header, since the API compares them byte for byte.
// "*" is refused: the API answers with a user's history and channel
// signatures, so which sites' pages may read them is a list the operator
// writes, and browsers refuse "*" with credentials, which a gateway that
// identifies users by cookie needs (the answer would then echo any origin).
func corsOrigins(v string, errs *[]error) []string {
	var origins []string
	for o := range strings.SplitSeq(v, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if o == "*" {
			*errs = append(*errs, errors.New(`API_CORS_ORIGINS: "*" is refused: list the origins of your web apps (https://app.example.com), `+
				"since the API answers with users' history and channel signatures"))
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Opaque != "" {
			*errs = append(*errs, fmt.Errorf("API_CORS_ORIGINS: %q is not an origin (scheme://host[:port], such as https://app.example.com)", o))
			continue
		}
		// What a browser sends: lower case, no default port, no path.
		host := u.Hostname()
		if strings.Contains(host, ":") {
			host = "[" + host + "]" // IPv6
		}
		want := strings.ToLower(u.Scheme + "://" + host)
		if p := u.Port(); p != "" && p != map[string]string{"https": "443", "http": "80"}[u.Scheme] {
			want += ":" + p
		}
		if o != want {
			*errs = append(*errs, fmt.Errorf("API_CORS_ORIGINS: %q is not an origin as browsers send it; write %q", o, want))
			continue
		}
		origins = append(origins, o)
	}
	return origins
}

// validate checks what `roomcast api` needs: an address to listen on and
// exactly one identity mode with the settings that go with it.
func (a APIConfig) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(a.Addr); err != nil {
		errs = append(errs, fmt.Errorf("API_ADDR: %q is not host:port (for example :8081)", a.Addr))
	}
	var modes []string
	for _, m := range []struct{ name, value string }{
		{"API_JWKS_URL", a.JWKSURL}, {"API_JWT_SECRET", a.JWTSecret}, {"API_TRUSTED_USER_HEADER", a.TrustedUserHeader},
	} {
		if m.value != "" {
			modes = append(modes, m.name)
		}
	}
	switch len(modes) {
	case 0:
		errs = append(errs, errors.New("API_JWKS_URL, API_JWT_SECRET or API_TRUSTED_USER_HEADER: one is required, "+
			"to say how roomcast api identifies a caller (an identity provider's keys, an HS256 secret, or a gateway's header)"))
	case 1:
	default:
		errs = append(errs, fmt.Errorf("%s: set only one identity mode, not %s", modes[0], strings.Join(modes, " and ")))
	}
	switch {
	case a.JWKSURL != "":
		errs = append(errs, a.validateJWKSURL())
		if a.JWTIssuer == "" {
			errs = append(errs, errors.New("API_JWT_ISSUER: required with API_JWKS_URL (the iss of the identity provider's tokens), "+
				"so that a token another issuer signed with a key of the same set is refused"))
		}
	case a.JWTSecret != "":
		if len(a.JWTSecret) < MinJWTSecretBytes {
			errs = append(errs, fmt.Errorf("API_JWT_SECRET: %d bytes, at least %d for HS256 (the value is not shown)", len(a.JWTSecret), MinJWTSecretBytes))
		}
	case a.TrustedUserHeader != "":
		if !validHeaderName(a.TrustedUserHeader) {
			errs = append(errs, fmt.Errorf("API_TRUSTED_USER_HEADER: %q is not an HTTP header name (for example X-User-Id)", a.TrustedUserHeader))
		}
		if strings.EqualFold(a.TrustedUserHeader, "Authorization") || strings.EqualFold(a.TrustedUserHeader, "Cookie") {
			errs = append(errs, fmt.Errorf("API_TRUSTED_USER_HEADER: %q carries credentials, not a user id set by a gateway", a.TrustedUserHeader))
		}
		for _, s := range []struct{ name, value string }{
			{"API_JWT_ISSUER", a.JWTIssuer}, {"API_JWT_AUDIENCE", strings.Join(a.JWTAudiences, ",")},
		} {
			if s.value != "" {
				errs = append(errs, fmt.Errorf("%s: applies to bearer tokens (API_JWKS_URL or API_JWT_SECRET), not to API_TRUSTED_USER_HEADER", s.name))
			}
		}
	}
	return errors.Join(errs...)
}

// validateJWKSURL refuses a key set roomcast would fetch in clear text from
// another host: whoever can change it on the way can sign any token.
func (a APIConfig) validateJWKSURL() error {
	u, err := url.Parse(a.JWKSURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("API_JWKS_URL: %q is not an https:// URL", a.JWKSURL)
	}
	if u.User != nil {
		return errors.New("API_JWKS_URL: must not carry credentials")
	}
	if u.Scheme == "http" && !a.JWKSAllowInsecure && !isLoopback(u.Hostname()) {
		return fmt.Errorf("API_JWKS_URL: %q is plain http to another host: whoever can change the key set on the way can sign any token; "+
			"use https://, or set API_JWKS_ALLOW_INSECURE=true to accept that", a.JWKSURL)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validHeaderName is RFC 9110's token, the syntax of a field name.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validateAPIPusher checks the Pusher settings channel authorization signs
// with: the app's key and secret (the API never calls Pusher).
func validateAPIPusher(key, secret string) error {
	var errs []error
	if key == "" {
		errs = append(errs, errors.New("PUSHER_KEY: required (roomcast api signs channel authorizations with the app's key and secret)"))
	}
	if secret == "" {
		errs = append(errs, errors.New("PUSHER_SECRET: required (roomcast api signs channel authorizations with it)"))
	}
	return errors.Join(errs...)
}
