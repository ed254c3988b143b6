package httpapi

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// fakeJWT accepts the token "jwt.ok.sig" as user "ada".
type fakeJWT struct{}

func (fakeJWT) Verify(_ context.Context, token string) (string, error) {
	if token == "jwt.ok.sig" {
		return "ada", nil
	}
	return "", agentstream.Errorf(agentstream.CodeUnauthorized, "the JWT is not valid")
}

func looksJWT(s string) bool { return strings.HasPrefix(s, "jwt.") }

// TestIdentitiesAuthenticate: which credential goes where, and the
// service header's rules, with and without each kind configured.
func TestIdentitiesAuthenticate(t *testing.T) {
	t.Parallel()
	const key, svc = "key-0123456789abcdef", "svc-0123456789abcdef"
	all := NewIdentities(map[string]string{key: "carol"}, map[string]string{svc: "django"}, fakeJWT{}, looksJWT)
	keysOnly := NewIdentities(map[string]string{key: "carol"}, nil, nil, looksJWT)
	local := NewIdentities(nil, nil, nil, looksJWT)
	for _, tc := range []struct {
		name   string
		a      *Identities
		bearer string
		user   string // X-Agentstream-User; "-" for two of them
		want   Identity
		err    string
	}{
		{"jwt", all, "jwt.ok.sig", "", Identity{UserID: "ada", Via: ViaJWT}, ""},
		{"bad jwt", all, "jwt.bad.sig", "", Identity{}, "JWT is not valid"},
		{"api key", all, key, "", Identity{UserID: "carol", Via: ViaAPIKey}, ""},
		{"service key", all, svc, "ada", Identity{UserID: "ada", Via: ViaServiceKey}, ""},
		{"service key, no user", all, svc, "", Identity{}, "must name the end user"},
		{"service key, two users", all, svc, "-", Identity{}, "one user id"},
		{"service key, control char", all, svc, "a\x01b", Identity{}, "one user id"},
		{"header with a key", all, key, "ada", Identity{}, "only with a service key"},
		{"no credential", all, "", "", Identity{}, "missing credential"},
		{"jwt without auth.jwt", keysOnly, "jwt.ok.sig", "", Identity{}, "auth.jwt is not configured"},
		{"key, keys only", keysOnly, key, "", Identity{UserID: "carol", Via: ViaAPIKey}, ""},
		{"header, keys only", keysOnly, key, "ada", Identity{}, "only with a service key"},
		{"local", local, "", "", Identity{UserID: LocalUser, Via: ViaLocal}, ""},
		{"header, local", local, "", "ada", Identity{}, "only with a service key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/threads", nil)
			if tc.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			switch tc.user {
			case "":
			case "-":
				r.Header.Add(UserHeader, "ada")
				r.Header.Add(UserHeader, "bob")
			default:
				r.Header.Set(UserHeader, tc.user)
			}
			id, err := tc.a.Authenticate(r)
			if tc.err == "" {
				if err != nil || id != tc.want {
					t.Fatalf("Authenticate = %+v, %v; want %+v", id, err, tc.want)
				}
				return
			}
			if e := agentstream.AsError(err); err == nil || e.Code != agentstream.CodeUnauthorized || !strings.Contains(e.Message, tc.err) {
				t.Fatalf("Authenticate = %+v, %v; want a 401 saying %q", id, err, tc.err)
			}
		})
	}
}
