package api

import "net/http"

// HeaderIdentity takes the user id from a header that a gateway in front
// of roomcast api sets once it has authenticated the request. It is only
// as safe as that gateway: it must remove the header from what clients
// send, and roomcast api must not be reachable around it.
type HeaderIdentity struct {
	Header string
}

// UserID is the header's value, exactly (identify checks it is an id).
func (h HeaderIdentity) UserID(r *http.Request) (string, error) {
	values := r.Header.Values(h.Header)
	switch len(values) {
	case 0:
		return "", refuse("missing", "no "+h.Header+" header", nil)
	case 1:
		if values[0] == "" {
			return "", refuse("missing", "empty "+h.Header+" header", nil)
		}
		return values[0], nil
	default:
		// Two values: one may come from the client and one from the
		// gateway; taking either would trust the client.
		return "", refuse("malformed", "more than one "+h.Header+" header", nil)
	}
}
