package publishers

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// redact returns a Pusher call's error as text fit for the logs, the outbox
// (deliveries.last_error and parked_reason, which anyone reading the
// database sees) and readiness. pusher-http-go signs each request in its
// URL's query (auth_key, auth_timestamp, auth_version, body_md5,
// auth_signature), and a network error (*url.Error) quotes that URL whole;
// Pusher's 401 answers quote the string it signed, query included. Both
// lose the query; the rest (operation, scheme, host, path, cause, status,
// Pusher's message) stays.
func redact(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.URL != "" {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.ForceQuery, u.Fragment, u.User = "", false, "", nil
			s = strings.ReplaceAll(s, ue.URL, u.String())
		}
	}
	s = urlQuery.ReplaceAllString(s, "$1")
	return signedParams.ReplaceAllString(s, "[query removed]")
}

var (
	// urlQuery is an absolute URL's query (up to a space or a quote).
	urlQuery = regexp.MustCompile(`(https?://[^\s"'?#]*)[?#][^\s"']*`)
	// signedParams is a run of query parameters from the first one Pusher
	// signs with, wherever it appears (a 401's string to sign has no "?").
	signedParams = regexp.MustCompile(`(?i)(auth_key|auth_signature|auth_timestamp|auth_version|body_md5)=[^\s"'\\]*`)
)
