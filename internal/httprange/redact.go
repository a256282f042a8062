package httprange

import (
	"errors"
	"net/url"
	"strings"
)

// redact returns rawURL without user information, query and fragment, for
// messages: the query may carry a token.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if i := strings.IndexAny(rawURL, "?#"); i >= 0 {
			rawURL = rawURL[:i]
		}
		if i := strings.Index(rawURL, "@"); i >= 0 {
			rawURL = rawURL[i+1:]
		}
		return rawURL
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "...", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// stripURL removes the *url.Error net/http wraps around a client error: its
// message holds the full URL, query and all. What is left names the
// failure ("dial tcp 10.0.0.1:80: connect: connection refused").
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
