package fetch

import (
	"net/url"
	"strings"
)

// RedactURL returns raw as the agent may show it on the console or in a
// phase report: without user information, query and fragment, and without
// its last path element, which in a boot document's or a report's URL is a
// token ("http://s/doc/TOKEN" shows as "http://s/doc/..."). It is the
// agent's one URL redactor; RedactImageURL is the same with the last
// element kept.
func RedactURL(raw string) string { return redact(raw, false) }

// RedactImageURL is RedactURL for an image's URL, whose last path element
// names the image (its digest on an overboot server, a file name on a
// static command line): a failure must say which file it could not fetch.
// User information and query are hidden all the same (a presigned URL
// carries its signature in the query).
func RedactImageURL(raw string) string { return redact(raw, true) }

func redact(raw string, keepName bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if !keepName {
		// The escaped path: a token may hold an escaped slash.
		ep := u.EscapedPath()
		if i := strings.LastIndex(ep, "/"); i >= 0 && i < len(ep)-1 {
			dir, err := url.PathUnescape(ep[:i+1])
			if err != nil {
				return "(unparsable URL)"
			}
			u.Path = dir + "..."
		}
	}
	u.RawPath = ""
	if u.RawQuery != "" {
		u.RawQuery = "..."
	}
	return u.String()
}
