package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWTSettings are the checks a bearer token passes besides its signature.
type JWTSettings struct {
	Issuer    string        // iss must equal it ("": not checked)
	Audiences []string      // aud must hold one of them (none: not checked)
	Leeway    time.Duration // clock skew allowed on exp, nbf and iat
	UserClaim string        // the claim holding the user id ("": sub)
}

// JWKSOptions tune how an identity provider's key set is fetched.
type JWKSOptions struct {
	// Refresh is how often the set is fetched again (default 1h), so that
	// a key the provider removed stops verifying. A token signed with a
	// key roomcast does not know yet fetches the set at once, at most
	// once per UnknownKeyRefresh (default 30s): a rotation is picked up
	// by the first token signed with the new key.
	Refresh           time.Duration
	UnknownKeyRefresh time.Duration
	Client            *http.Client // default: a client with a 10s timeout
	Log               *slog.Logger
}

// Asymmetric algorithms only: with a key set, a token must never be
// verified as HS256 with a public key for its secret (the classic
// algorithm confusion), and "none" is never accepted.
var jwksAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// maxTokenBytes bounds what is parsed: far above any identity token.
const maxTokenBytes = 16 << 10

// jwtIdentity verifies a bearer JWT and takes the user id from a claim.
type jwtIdentity struct {
	parser *jwt.Parser
	keys   func(ctx context.Context) jwt.Keyfunc
	claim  string
	jwks   keyfunc.Keyfunc // nil with a secret
}

// NewSecretIdentity verifies HS256 tokens signed with secret.
func NewSecretIdentity(secret []byte, s JWTSettings) Identity {
	key := func(*jwt.Token) (any, error) { return secret, nil }
	return newJWTIdentity(s, []string{"HS256"}, func(context.Context) jwt.Keyfunc { return key }, nil)
}

// NewJWKSIdentity verifies tokens signed with a key of the JSON Web Key
// Set at jwksURL, which it fetches now and caches (see JWKSOptions). A
// first fetch that fails is logged, not returned: the provider may come
// back, and /readyz says no key is known until then.
func NewJWKSIdentity(ctx context.Context, jwksURL string, s JWTSettings, o JWKSOptions) (Identity, error) {
	if o.Refresh <= 0 {
		o.Refresh = time.Hour
	}
	if o.UnknownKeyRefresh <= 0 {
		o.UnknownKeyRefresh = 30 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	k, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{jwksURL}, keyfunc.Override{
		Client:            o.Client,
		HTTPTimeout:       o.Client.Timeout,
		RefreshInterval:   o.Refresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(o.UnknownKeyRefresh), 1),
		// A token with an unknown key waits for the limiter only briefly:
		// a request never hangs on it.
		RateLimitWaitMax: time.Second,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				o.Log.WarnContext(ctx, "cannot fetch the JWT key set", slog.String("url", u), slog.String("error", err.Error()))
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("API_JWKS_URL: %w", err)
	}
	return newJWTIdentity(s, jwksAlgorithms, k.KeyfuncCtx, k), nil
}

func newJWTIdentity(s JWTSettings, algorithms []string, keys func(context.Context) jwt.Keyfunc, jwks keyfunc.Keyfunc) *jwtIdentity {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algorithms),
		jwt.WithLeeway(s.Leeway),
		jwt.WithExpirationRequired(), // a token without exp would be good forever
		jwt.WithIssuedAt(),
	}
	if s.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(s.Issuer))
	}
	if len(s.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(s.Audiences...))
	}
	if s.UserClaim == "" {
		s.UserClaim = "sub"
	}
	return &jwtIdentity{parser: jwt.NewParser(opts...), keys: keys, claim: s.UserClaim, jwks: jwks}
}

// UserID verifies the request's bearer token and returns its user claim.
func (j *jwtIdentity) UserID(r *http.Request) (string, error) {
	raw, err := bearerToken(r)
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(raw, claims, j.keys(r.Context())); err != nil {
		return "", tokenRefusal(err)
	}
	v, ok := claims[j.claim]
	if !ok || v == nil {
		return "", refuse("claim", "the token has no "+j.claim+" claim", nil)
	}
	id, ok := v.(string)
	if !ok {
		return "", refuse("claim", "the token's "+j.claim+" claim is not a string", nil)
	}
	return id, nil
}

// bearerToken is the token of "Authorization: Bearer <token>" (RFC 6750).
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", refuse("missing", "no bearer token (Authorization: Bearer <JWT>)", nil)
	}
	if len(values) > 1 {
		return "", refuse("malformed", "more than one Authorization header", nil)
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", refuse("malformed", "the Authorization header is not a bearer token", nil)
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > maxTokenBytes {
		return "", refuse("malformed", "the bearer token is empty or too long", nil)
	}
	return token, nil
}

// tokenRefusal says why jwt refused a token in words a client can act on.
// The order matters: a token can fail for several reasons at once.
func tokenRefusal(err error) *Refusal {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("malformed", "malformed token", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse("unknown_key", "the token's key or algorithm is unknown", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse("signature", "invalid signature or algorithm", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("expired", "token expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse("not_yet_valid", "token not valid yet", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse("issuer", "token from another issuer", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("audience", "token meant for another audience", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse("claim", "the token lacks a required claim (exp)", err)
	}
	return refuse("invalid", "invalid token", err)
}

func (j *jwtIdentity) challenge(err error) string {
	var ref *Refusal
	if errors.As(err, &ref) && ref.Label != "missing" {
		return `Bearer realm="roomcast", error="invalid_token"`
	}
	return `Bearer realm="roomcast"`
}

func (j *jwtIdentity) ready(ctx context.Context) error {
	if j.jwks == nil {
		return nil
	}
	keys, err := j.jwks.Storage().KeyReadAll(ctx)
	if err != nil {
		return fmt.Errorf("JWT key set: %w", err)
	}
	if len(keys) == 0 {
		return errors.New("JWT key set: no key fetched from API_JWKS_URL yet")
	}
	return nil
}
