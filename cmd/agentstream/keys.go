package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/postgres"
	"github.com/agentstream/agentstream/sqlite"
)

const keysUsage = `Usage:
  agentstream keys create --user NAME [--name LABEL]
        make an API key for user NAME; the key is printed once, on stdout
  agentstream keys list [--user NAME]
        the keys (of user NAME): id, user, name, hint (the key's last 4
        characters), created, revoked; never a key itself
  agentstream keys revoke ID
        revoke the key ID (revoking a revoked key changes nothing)

The store keeps only the SHA-256 of each key. A running server accepts a
new key at once and refuses a revoked one within 2 seconds, on every
instance that shares the store, without a restart. These commands work
while serve runs, on the same database: on SQLite they do not take the
file's serve lock.

Every subcommand takes the store as serve does:
  --database-url URL   a SQLite file path (or sqlite://PATH) or a postgres:// URL
                       (env AGENTSTREAM_DATABASE_URL; default: the config
                       file's database_url, else agentstream.db)
  --config FILE        the config file whose database_url to use
                       (env AGENTSTREAM_CONFIG)

Exit status: 0 on success, 1 when the store fails or the key is unknown,
2 for a usage error.
`

// keysCommand is `agentstream keys`: API keys kept hashed in the store.
func keysCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, keysUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	if sub == "help" || sub == "-h" || sub == "--help" {
		_, _ = fmt.Fprint(stdout, keysUsage)
		return 0
	}
	fs := flag.NewFlagSet("agentstream keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(fs.Output(), keysUsage) }
	databaseURL := fs.String("database-url", "", "")
	configFile := fs.String("config", "", "")
	var user, name *string
	switch sub {
	case "create":
		user = fs.String("user", "", "")
		name = fs.String("name", "", "")
	case "list":
		user = fs.String("user", "", "")
	case "revoke":
	default:
		_, _ = fmt.Fprintf(stderr, "agentstream keys: unknown subcommand %q\n\n%s", sub, keysUsage)
		return 2
	}
	usageErr := func(format string, a ...any) int {
		_, _ = fmt.Fprintf(stderr, "agentstream keys %s: %s\n\n%s", sub, fmt.Sprintf(format, a...), keysUsage)
		return 2
	}
	// Flags may follow the revoked ID too.
	var rest []string
	for a := args; ; a = fs.Args()[1:] {
		if err := fs.Parse(a); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2 // the flag package said why, and the usage
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
	}
	switch sub {
	case "create":
		if *user == "" {
			return usageErr("--user NAME is required")
		}
		if err := agentstream.CheckUserID(*user); err != nil {
			return usageErr("--user: %s", agentstream.AsError(err).Message)
		}
		if len(*name) > agentstream.MaxKeyNameBytes {
			return usageErr("--name is longer than %d bytes", agentstream.MaxKeyNameBytes)
		}
		if len(rest) > 0 {
			return usageErr("unexpected argument %q", rest[0])
		}
	case "list":
		if len(rest) > 0 {
			return usageErr("unexpected argument %q", rest[0])
		}
	case "revoke":
		if len(rest) != 1 {
			return usageErr("give the ID of one key (agentstream keys list shows them)")
		}
	}

	dbURL, err := keysDatabaseURL(*databaseURL, *configFile, getenv)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream keys %s: %v\n", sub, err)
		return 2
	}
	ks, closeStore, err := openKeyStore(ctx, dbURL, sub == "create")
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream keys %s: %v\n", sub, err)
		return 1
	}
	defer closeStore()
	fail := func(err error) int {
		_, _ = fmt.Fprintf(stderr, "agentstream keys %s: %v\n", sub, err)
		return 1
	}

	switch sub {
	case "create":
		secret, k := agentstream.NewAPIKey(*user, *name, time.Now())
		if err := ks.CreateKey(ctx, k); err != nil {
			return fail(err)
		}
		_, _ = fmt.Fprintln(stdout, secret)
		_, _ = fmt.Fprintf(stderr, "created key %s for user %q in %s: the key above is shown once, and only its hash is stored; send it as Authorization: Bearer <key>\n", k.ID, k.UserID, redactURL(dbURL))
	case "list":
		keys, err := ks.ListKeys(ctx, *user)
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, "ID\tUSER\tNAME\tHINT\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.UTC().Format(time.RFC3339)
			}
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t…%s\t%s\t%s\n", k.ID, k.UserID, dash(k.Name), k.Hint, k.CreatedAt.UTC().Format(time.RFC3339), revoked)
		}
		if err := tw.Flush(); err != nil {
			return fail(err)
		}
	case "revoke":
		at := time.Now()
		k, err := ks.RevokeKey(ctx, rest[0], at)
		if agentstream.CodeOf(err) == agentstream.CodeNotFound {
			return fail(fmt.Errorf("no key has the ID %q (agentstream keys list shows them)", rest[0]))
		}
		if err != nil {
			return fail(err)
		}
		when := k.RevokedAt.UTC().Format(time.RFC3339)
		if k.RevokedAt.Before(at.Truncate(time.Microsecond)) {
			_, _ = fmt.Fprintf(stdout, "key %s of user %q was already revoked at %s\n", k.ID, k.UserID, when)
		} else {
			_, _ = fmt.Fprintf(stdout, "revoked key %s of user %q at %s: running servers refuse it within 2s\n", k.ID, k.UserID, when)
		}
	}
	return 0
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// keysDatabaseURL is the store serve would use: the flag, else
// AGENTSTREAM_DATABASE_URL, else the config file's database_url, else
// the default.
func keysDatabaseURL(flagURL, configFile string, getenv func(string) string) (string, error) {
	if flagURL != "" {
		return flagURL, nil
	}
	if v := getenv("AGENTSTREAM_DATABASE_URL"); v != "" {
		return v, nil
	}
	if configFile == "" {
		configFile = getenv("AGENTSTREAM_CONFIG")
	}
	var cfg config.Config
	if configFile != "" {
		data, err := os.ReadFile(configFile)
		if err != nil {
			return "", fmt.Errorf("reading the config file: %w", err)
		}
		// The first key of a server that is to listen beyond loopback is
		// made from the config that needs it.
		if cfg, err = config.LoadWith(configFile, data, []config.ValidateOption{config.StoreMayHoldKeys()}); err != nil {
			return "", fmt.Errorf("the config file:\n%w", err)
		}
	}
	return cfg.WithDefaults().DatabaseURL, nil
}

// openKeyStore opens the store of url for the keys commands. A SQLite
// file is opened without its serve lock: a running serve holds it, and
// WAL with a busy timeout makes a write beside it safe. Pending
// migrations are applied, as serve does (a key table that serve, an
// older binary, does not know is harmless to it). A SQLite file that does
// not exist is created only when create is set (a key may be made before
// the first serve); listing or revoking in it would only hide a wrong path.
func openKeyStore(ctx context.Context, url string, create bool) (agentstream.KeyStore, func(), error) {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		st, err := postgres.Open(ctx, url)
		if err != nil {
			return nil, nil, fmt.Errorf("opening the PostgreSQL store: %w", err)
		}
		return st, func() { _ = st.Close() }, nil // nothing is left to write
	}
	if strings.Contains(url, "://") && !strings.HasPrefix(url, "sqlite://") {
		return nil, nil, fmt.Errorf("database url %q: unsupported scheme (want a SQLite file path, sqlite://PATH or postgres://…)", url)
	}
	path := strings.TrimPrefix(url, "sqlite://")
	if _, err := os.Stat(path); err != nil && !create {
		return nil, nil, fmt.Errorf("SQLite database %s: %w (start agentstream serve on it once, or give --database-url)", path, err)
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil // nothing is left to write
}

// redactURL hides the password of a database URL, for messages.
func redactURL(s string) string {
	u, err := neturl.Parse(s)
	if err != nil || u.Scheme == "" {
		return s // a file path
	}
	return u.Redacted()
}
