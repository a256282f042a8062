package httprange

import (
	"errors"
	"net/url"
)

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
