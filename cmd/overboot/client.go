package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/config"
)

// DefaultServer is where the admin commands look for the server when
// nothing says where it is.
const DefaultServer = "http://127.0.0.1:8080"

// defaultConfig is the server's configuration file the admin commands read
// the server's address from, when it exists and nothing else says.
var defaultConfig = "/etc/overboot.conf"

// packageConfig is where the Debian package puts it; read when
// defaultConfig is not there.
var packageConfig = "/etc/overboot/overboot.conf"

// client calls a server's admin API.
type client struct {
	server string
	from   string // where server came from, for errors
	token  string
	http   *http.Client
}

// clientFlags are the flags every admin command takes, and the output
// format of those that print an answer.
type clientFlags struct {
	server    string
	config    string
	tokenFile string
	output    string
	json      bool // --json, deprecated: --output json
}

func (f *clientFlags) add(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.server, "server", "", "the server's `URL` (default $OVERBOOT_SERVER, else from --config, else "+DefaultServer+")")
	c.PersistentFlags().StringVar(&f.config, "config", "", "the server's configuration `file`, read for its address (url, else http://listen) without --server or $OVERBOOT_SERVER (default "+defaultConfig+" if it exists)")
	c.MarkPersistentFlagFilename("config", "conf")
	c.PersistentFlags().StringVar(&f.tokenFile, "token-file", "", "`file` holding an admin token (default $OVERBOOT_TOKEN_FILE; else $OVERBOOT_TOKEN holds the token itself)")
	c.PersistentFlags().BoolVar(&f.json, "json", false, "print the answer as JSON")
	c.PersistentFlags().MarkDeprecated("json", "use --output json (-o json)")
	c.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return f.checkOutput(cmd) }
}

// Output formats (--output).
const (
	outputText = "text"
	outputJSON = "json"
)

// addOutput gives c -o/--output: a table or lines for people (text), or
// the answer as JSON for scripts.
func (f *clientFlags) addOutput(c *cobra.Command) {
	c.Flags().StringVarP(&f.output, "output", "o", outputText, "output `format`: text, or json (the answer as indented JSON, for scripts)")
	c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{outputText, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
}

// print writes v as JSON with --output json, else calls text.
func (f *clientFlags) print(sio stdio, v any, text func(w io.Writer)) error {
	switch {
	case f.json || f.output == outputJSON:
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
			v = []struct{}{} // a list with nothing in it: [], never null
		}
		enc := json.NewEncoder(sio.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case f.output == outputText || f.output == "":
		text(sio.out)
		return nil
	}
	return usageError{fmt.Sprintf("--output %q: want text or json", f.output)}
}

// checkOutput refuses an unknown --output before anything is done (the
// admin commands' PersistentPreRunE).
func (f *clientFlags) checkOutput(c *cobra.Command) error {
	if f.output != "" && f.output != outputText && f.output != outputJSON {
		return usagef(c, "--output %q: want text or json", f.output)
	}
	return nil
}

// apiRequest is one call to the API.
type apiRequest struct {
	method, path string
	body         any
}

// apiCmd makes c a command that sends one request to the API (req makes
// it from the arguments and flags), decodes the answer as a T and prints
// it with text, or as JSON with --output json.
func apiCmd[T any](f *clientFlags, sio stdio, c *cobra.Command, req func(c *cobra.Command, args []string) (apiRequest, error), text func(w io.Writer, args []string, v T)) *cobra.Command {
	f.addOutput(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		r, err := req(cmd, args)
		if err != nil {
			return err
		}
		cl, err := f.client()
		if err != nil {
			return err
		}
		var v T
		if err := cl.do(cmd.Context(), r.method, r.path, r.body, &v); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(append([]string{cmdPath(cmd)}, args...), " "), err)
		}
		return f.print(sio, v, func(w io.Writer) { text(w, args, v) })
	}
	return c
}

// getCmd makes c a list or show command: apiCmd with GET path(args).
func getCmd[T any](f *clientFlags, sio stdio, c *cobra.Command, path func(c *cobra.Command, args []string) (string, error), text func(w io.Writer, v T)) *cobra.Command {
	return apiCmd(f, sio, c, func(c *cobra.Command, args []string) (apiRequest, error) {
		p, err := path(c, args)
		return apiRequest{http.MethodGet, p, nil}, err
	}, func(w io.Writer, _ []string, v T) { text(w, v) })
}

// fixedPath is the path of a command without arguments.
func fixedPath(p string) func(*cobra.Command, []string) (string, error) {
	return func(*cobra.Command, []string) (string, error) { return p, nil }
}

// argPath is prefix + the first argument (escaped) + suffix.
func argPath(prefix, suffix string) func(*cobra.Command, []string) (string, error) {
	return func(_ *cobra.Command, args []string) (string, error) {
		return prefix + url.PathEscape(args[0]) + suffix, nil
	}
}

// macPath is prefix + the first argument, a MAC, + suffix; a MAC that
// does not parse is a usage error.
func macPath(prefix, suffix string) func(*cobra.Command, []string) (string, error) {
	return func(c *cobra.Command, args []string) (string, error) {
		mac, err := boot.ParseMAC(args[0])
		if err != nil {
			return "", usagef(c, "%v", err)
		}
		return prefix + mac.String() + suffix, nil
	}
}

func (f *clientFlags) client() (*client, error) {
	server, from, err := f.serverAddr()
	if err != nil {
		return nil, err
	}
	token := os.Getenv("OVERBOOT_TOKEN")
	if file := cmp.Or(f.tokenFile, os.Getenv("OVERBOOT_TOKEN_FILE")); file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, usageError{"admin token: " + file + " is empty"}
		}
	}
	if token == "" {
		return nil, usageError{"no admin token: give --token-file FILE (or $OVERBOOT_TOKEN_FILE), or put the token itself in $OVERBOOT_TOKEN (overboot token create NAME --data DIR --out FILE makes one)"}
	}
	return &client{server: strings.TrimSuffix(server, "/"), from: from, token: token, http: &http.Client{Timeout: 10 * time.Minute}}, nil
}

// serverAddr is the server's URL and where it came from: --server,
// $OVERBOOT_SERVER, the configuration file of --config (or defaultConfig
// when it exists): its url, else http:// and its listen address (an
// unspecified host is this machine's loopback), else DefaultServer.
func (f *clientFlags) serverAddr() (string, string, error) {
	if f.server != "" {
		return f.server, "--server", nil
	}
	if s := os.Getenv("OVERBOOT_SERVER"); s != "" {
		return s, "$OVERBOOT_SERVER", nil
	}
	path := f.config
	for _, p := range []string{defaultConfig, packageConfig} {
		if path != "" {
			break
		}
		if _, err := os.Stat(p); err == nil {
			path = p
		}
	}
	if path == "" {
		return DefaultServer, "the default", nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return "", "", fmt.Errorf("the server's address: %w (or give --server URL)", err)
	}
	if cfg.URL != "" {
		return cfg.URL, "url in " + path, nil
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return "", "", fmt.Errorf("the server's address: %s: listen %q: %w", path, cfg.Listen, err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), "listen in " + path, nil
}

// do sends a request to the API and decodes its JSON answer into out (a
// *json.RawMessage keeps it as is). An error answer becomes an error with
// the server's message.
func (c *client) do(ctx context.Context, method, path string, in any, out any) error {
	var body io.Reader
	ctype := "application/json"
	switch v := in.(type) {
	case nil:
	case io.Reader:
		body, ctype = v, "application/octet-stream"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+api.Prefix+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: is overboot serve running at %s (%s)?", err, c.server, c.from)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (%s)", e.Error, resp.Status)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func errArgs(c *cobra.Command, want string) error {
	return usagef(c, "want %s (see --help)", want)
}

// exactArgs is cobra.ExactArgs with a usage error that says what is wanted.
func exactArgs(n int, want string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return errArgs(c, want)
		}
		return nil
	}
}

var errCanceled = errors.New("canceled")

// group is a command that only holds subcommands (see groups: without
// one, or with an unknown one, it is a usage error).
func group(use, short string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short}
}
