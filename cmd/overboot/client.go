package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server/api"
)

// DefaultServer is where the admin commands look for the server.
const DefaultServer = "http://127.0.0.1:8080"

// client calls a server's admin API.
type client struct {
	server string
	token  string
	http   *http.Client
}

// clientFlags are the flags every admin command takes.
type clientFlags struct {
	server    string
	tokenFile string
	json      bool
}

func (f *clientFlags) add(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.server, "server", "", "the server's `URL` (default $OVERBOOT_SERVER, else "+DefaultServer+")")
	c.PersistentFlags().StringVar(&f.tokenFile, "token-file", "", "`file` holding an admin token (default $OVERBOOT_TOKEN_FILE; else $OVERBOOT_TOKEN holds the token itself)")
	c.PersistentFlags().BoolVar(&f.json, "json", false, "print the server's JSON answer")
}

func (f *clientFlags) client() (*client, error) {
	server := f.server
	if server == "" {
		server = os.Getenv("OVERBOOT_SERVER")
	}
	if server == "" {
		server = DefaultServer
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
	return &client{server: strings.TrimSuffix(server, "/"), token: token, http: &http.Client{Timeout: 10 * time.Minute}}, nil
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
		return fmt.Errorf("%w: is overboot serve running at %s?", err, c.server)
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

// show prints v as JSON when asked, else calls text.
func show(sio stdio, asJSON bool, v any, text func(w io.Writer)) error {
	if asJSON {
		enc := json.NewEncoder(sio.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(sio.out)
	return nil
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
