package fakepusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	maxTimestampSkew = 600 // seconds between auth_timestamp and now
	authVersion      = "1.0"
)

// authenticate checks auth_key, auth_timestamp, auth_version, body_md5 and auth_signature.
func (s *Server) authenticate(r *http.Request, body []byte, now time.Time) (outcome, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fail(http.StatusUnauthorized, "Malformed query string: %v", err), false
	}
	key := q.Get("auth_key")
	if key == "" {
		return fail(http.StatusUnauthorized, "Missing auth_key"), false
	}
	if key != s.cfg.Key {
		return fail(http.StatusUnauthorized, "Unknown auth_key"), false
	}
	tsRaw := q.Get("auth_timestamp")
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return fail(http.StatusUnauthorized, "Missing or invalid auth_timestamp %q", tsRaw), false
	}
	if skew := now.Unix() - ts; skew > maxTimestampSkew || skew < -maxTimestampSkew {
		return fail(http.StatusUnauthorized, "Timestamp expired: Given timestamp (%d) not within %ds of server time (%d)", ts, maxTimestampSkew, now.Unix()), false
	}
	if v := q.Get("auth_version"); v != authVersion {
		return fail(http.StatusUnauthorized, "Invalid auth_version %q (expected %s)", v, authVersion), false
	}
	sum := md5.Sum(body)
	wantMD5 := hex.EncodeToString(sum[:])
	gotMD5, hasMD5 := q["body_md5"]
	if len(body) > 0 && !hasMD5 {
		return fail(http.StatusUnauthorized, "Missing body_md5"), false
	}
	if hasMD5 && (len(gotMD5) != 1 || gotMD5[0] != wantMD5) {
		return fail(http.StatusUnauthorized, "Invalid body_md5: the body's MD5 is %s", wantMD5), false
	}
	sig := q.Get("auth_signature")
	if sig == "" {
		return fail(http.StatusUnauthorized, "Missing auth_signature"), false
	}
	toSign := stringToSign(r.Method, r.URL.Path, q)
	mac := hmac.New(sha256.New, []byte(s.cfg.Secret))
	mac.Write([]byte(toSign))
	want := hex.EncodeToString(mac.Sum(nil))
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) != 1 {
		return fail(http.StatusUnauthorized, "Invalid signature: you should have sent HmacSHA256Hex(%q, your_secret)", toSign), false
	}
	return outcome{}, true
}

// stringToSign returns Pusher's string to sign for a request: method, path and the query parameters except auth_signature (keys lowercased, sorted by key, k=v joined by &, values unescaped), separated by newlines.
//
// It is byte-identical to what pusher-http-go v5 signs (url.Values.Encode followed by url.QueryUnescape).
func stringToSign(method, path string, query url.Values) string {
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range query {
		lk := strings.ToLower(k)
		if lk == "auth_signature" {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, kv{lk, v})
		}
	}
	// Stable on key only, so repeated keys keep their order like url.Values.Encode.
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].k < pairs[j].k })
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(path)
	b.WriteByte('\n')
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}
