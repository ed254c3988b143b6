// Package origin parses web origins (scheme://host[:port]) as browsers
// send them in the Origin header, for the CORS allow-list: config checks
// the configured ones with it, and httpapi compares requests' with them.
package origin

import (
	"fmt"
	"net/url"
	"strings"
)

// Parse returns s as the Origin header of a page of that origin reads:
// lower case, without a trailing slash, without the scheme's default port.
// Anything else than scheme://host[:port] is an error that says why.
func Parse(s string) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil {
		return "", fmt.Errorf("%q is not an origin (%v): write scheme://host[:port], e.g. https://app.example.com", s, err)
	}
	switch {
	case u.Scheme == "" || u.Host == "":
		return "", fmt.Errorf("%q is not an origin: write scheme://host[:port], e.g. https://app.example.com", s)
	case u.User != nil:
		return "", fmt.Errorf("%q is not an origin: it has a user", s)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", fmt.Errorf("%q is not an origin: an origin has no path, query or fragment", s)
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}
