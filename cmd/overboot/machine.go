package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// runMachine is "overboot machine reset|rotate|delete MAC": it asks the
// running server, which ends the machine's iSCSI sessions first.
func runMachine(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("machine", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "the overboot server's `URL`")
	tokenFile := fs.String("token-file", "", "`file` holding an admin token (default: $OVERBOOT_TOKEN)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: overboot machine <action> MAC [-server URL]

actions:
  approve admit a machine that waits for approval (enroll = approve)
  reset   end the machine's sessions and drop its private disk (next boot starts blank)
  rotate  end its sessions and give it a new CHAP secret
  delete  end its sessions and remove everything the server keeps for it

flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{"machine: " + err.Error()}
	}
	if len(pos) != 2 {
		fs.Usage()
		return usageError{"machine: want an action and a MAC"}
	}
	action, mac := pos[0], pos[1]
	method, path := http.MethodPost, "/api/v1/machines/"+mac+"/"+action
	switch action {
	case "approve", "reset", "rotate":
	case "delete":
		method, path = http.MethodDelete, "/api/v1/machines/"+mac
	default:
		return usageError{fmt.Sprintf("machine: unknown action %q: want approve, reset, rotate or delete", action)}
	}
	token := os.Getenv("OVERBOOT_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return usageError{"machine: no admin token: set OVERBOOT_TOKEN or -token-file"}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(*server, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("machine %s: %w: is overboot serve running at %s?", action, err, *server)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("machine %s %s: %s: %s", action, mac, resp.Status, strings.TrimSpace(string(body)))
	}
	stdout.Write(body)
	return nil
}
