package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/roomcast/roomcast/domain"
	"github.com/roomcast/roomcast/projections"
)

// memberRoom reads the request's room and answers 400 when its id is not a
// valid one and 403 unless the user is a member of it now, an unknown room
// included (its existence is not told apart). It reports whether to go on.
func (s *Server) memberRoom(w http.ResponseWriter, r *http.Request) (string, bool) {
	room := r.PathValue("roomId")
	if !domain.IsValidID(room) {
		writeError(w, http.StatusBadRequest, "roomId: not a valid id")
		return "", false
	}
	_, member, err := projections.Membership(r.Context(), s.db, room, userID(r))
	if err != nil {
		s.failed(w, r, err)
		return "", false
	}
	if !member {
		writeError(w, http.StatusForbidden, "not a member of this room")
		return "", false
	}
	return room, true
}

// queryInt reads an optional integer parameter (0 when absent) and answers
// 400 when it is not an integer of at least least.
func queryInt(w http.ResponseWriter, r *http.Request, name string, least int64) (int64, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < least {
		writeError(w, http.StatusBadRequest, name+": want an integer of at least "+strconv.FormatInt(least, 10))
		return 0, false
	}
	return n, true
}

// pageLimit reads limit: defaultPage when absent, at most MaxPage (a larger
// one is cut to it, and the answer's more says what follows); 400 when it
// is not a positive integer.
func (s *Server) pageLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	n, ok := queryInt(w, r, "limit", 1)
	switch {
	case !ok:
		return 0, false
	case n == 0 && r.URL.Query().Get("limit") == "":
		return min(defaultPage, s.cfg.MaxPage), true
	default:
		return int(min(n, int64(s.cfg.MaxPage))), true
	}
}

// failed answers 500 for an error of the store, logged (a request its
// client gave up on is not).
func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	s.log.Error("history request failed", slog.String("path", r.URL.Path), slog.Any("error", err))
	writeError(w, http.StatusInternalServerError, "the history could not be read; try again")
}

// writeCacheable answers 200 with v as JSON, or 304 when the client holds
// it already (If-None-Match). The payloads inside are written byte for
// byte: no HTML escaping, json.RawMessage left as it is.
//
// Pages change under a client: a room's last page grows, and a delete
// redacts any page that carried its message. So no answer is fresh for a
// while (no max-age): "no-cache" makes a browser revalidate every time, and
// the ETag (a hash of the body) turns an unchanged page into a 304 without
// a body. "private": the answers are a member's, never a shared cache's.
func (s *Server) writeCacheable(w http.ResponseWriter, r *http.Request, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.failed(w, r, err)
		return
	}
	sum := sha256.Sum256(buf.Bytes())
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	h := w.Header()
	h.Set("Cache-Control", "private, no-cache")
	h.Set("ETag", etag)
	if matchesETag(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// matchesETag reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks of If-None-Match) or is "*".
func matchesETag(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}
