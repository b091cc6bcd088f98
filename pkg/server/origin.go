package server

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// CheckOrigin says why o cannot be an entry of the CORS allow-list, or
// returns nil. A browser sends its origin as scheme://host[:port], lower
// case, with no path and no default port, and the allow-list is compared
// with it as a string: "http://localhost:5173/" or "https://ui.example.se:443"
// would pass a looser check and then never match, so the UI would be
// refused with nothing in the log to say why. The configuration and New
// both use this one check.
func CheckOrigin(o string) error {
	if strings.TrimSpace(o) == "*" {
		return errors.New(`"*" would let every web page call the API; list the origins instead`)
	}
	if strings.TrimSpace(o) == "" {
		return errors.New("empty origin")
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an origin: write scheme://host[:port], e.g. http://localhost:5173", o)
	}
	want := u.Scheme + "://" + strings.ToLower(u.Host)
	switch port := u.Port(); {
	case (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443"):
		want = u.Scheme + "://" + strings.ToLower(u.Hostname())
		if strings.Contains(u.Hostname(), ":") {
			want = u.Scheme + "://[" + strings.ToLower(u.Hostname()) + "]"
		}
	}
	if o != want {
		return fmt.Errorf("%q never matches: a browser sends its origin as %q (no path, no trailing slash, no default port, lower case)", o, want)
	}
	return nil
}
