package api

import "net/http"

// cors lets pages served from origins (API_CORS_ORIGINS, exact, as
// browsers send them) call the API from another origin; without origins it
// adds nothing. A preflight of a listed origin is answered here, before the
// routes and so without an identity (a browser sends none with it). The
// answers echo the origin and allow credentials: the list is exact, so no
// other site gets them, and a gateway that identifies users by cookie needs
// them. Bearer tokens need only the Authorization header allowed.
func cors(origins []string, identity Identity, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[o] = true
	}
	// If-None-Match: a client may revalidate history pages by their ETag.
	headers := "Authorization, Content-Type, If-None-Match"
	if h, ok := identity.(HeaderIdentity); ok {
		headers += ", " + h.Header
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin") // a cache must not hand one origin's answer to another
		origin := r.Header.Values("Origin")
		if len(origin) != 1 || !allowed[origin[0]] {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin[0])
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", headers)
			h.Set("Access-Control-Max-Age", "600") // seconds; Chromium caps it at 7200
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "ETag, WWW-Authenticate")
		next.ServeHTTP(w, r)
	})
}
