package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/overboot/overboot/internal/pgtest"
	"github.com/overboot/overboot/server/state"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// sqliteStore makes a SQLite store with a user, a machine and its boot.
func sqliteStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), state.FileName)
	d, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if err := d.AddUser(ctx, "alice", "h"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Enter(ctx, state.Machine{MAC: "52:54:00:00:00:01", Profile: "kiosk"}, "open", state.Quota{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartBoot(ctx, state.Boot{MAC: "52:54:00:00:00:01", Profile: "kiosk"}, state.BootEvent{Phase: "script", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func counts(t *testing.T, d *state.DB) state.Counts {
	t.Helper()
	c, err := d.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStoreCopy: store copy moves a SQLite store into PostgreSQL (the
// password from --to-password-file) and back; it refuses a target with
// rows unless --replace, a password in a connection string, and a source
// that is not there.
func TestStoreCopy(t *testing.T) {
	ctx := context.Background()
	src := sqliteStore(t)
	role, pw := pgtest.Role(t)
	conn := pgtest.DatabaseOwnedBy(t, role)
	t.Setenv("PGPASSWORD", "")
	os.Unsetenv("PGPASSWORD")
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)

	out, err := cli(t, "", "store", "copy", "--from", "sqlite:"+src, "--to", conn, "--to-password-file", pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "copied 1 machines, 1 admissions, 1 users, 1 boots, 1 boot_events") || !strings.Contains(out, "check passed") {
		t.Errorf("output:\n%s", out)
	}
	s, err := state.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := state.OpenPostgres(ctx, conn, pw)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if diff := cmp.Diff(counts(t, s), counts(t, p)); diff != "" {
		t.Errorf("counts (-sqlite +postgres):\n%s", diff)
	}
	if u, err := p.User(ctx, "alice"); err != nil || u.PasswordHash != "h" {
		t.Errorf("the user in PostgreSQL: %+v %v", u, err)
	}

	_, err = cli(t, "", "store", "copy", "--from", "sqlite:"+src, "--to", conn, "--to-password-file", pwFile)
	if err == nil || !strings.Contains(err.Error(), "holds 1 machines, 1 admissions, 1 users, 1 boots, 1 boot_events") || !strings.Contains(err.Error(), "--replace deletes them") {
		t.Errorf("a second copy: %v", err)
	}
	if _, err := cli(t, "", "store", "copy", "--from", "sqlite:"+src, "--to", conn, "--to-password-file", pwFile, "--replace"); err != nil {
		t.Errorf("with --replace: %v", err)
	}
	// Back into a new SQLite file, the password from the environment.
	t.Setenv("PGPASSWORD", pw)
	back := filepath.Join(t.TempDir(), "back.db")
	if _, err := cli(t, "", "store", "copy", "--from", conn, "--to", "sqlite:"+back); err != nil {
		t.Fatal(err)
	}
	b, err := state.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if diff := cmp.Diff(counts(t, s), counts(t, b)); diff != "" {
		t.Errorf("counts (-sqlite +back):\n%s", diff)
	}
	if fi, err := os.Stat(back); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the new SQLite file: %v %v", fi, err)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "sqlite:" + src, "--to", "postgres://ob:s3cret@127.0.0.1/ob"}, "--to: postgres://ob:xxxxx@127.0.0.1/ob: the connection string has a password in it: put it in a file"},
		{[]string{"--from", "sqlite:" + filepath.Join(t.TempDir(), "none.db"), "--to", conn}, "--from: no store at"},
		{[]string{"--from", src, "--to", conn}, "want sqlite:PATH or a PostgreSQL store"},
		{[]string{"--from", "sqlite:" + src}, "--from and --to are needed"},
	} {
		_, err := cli(t, "", append([]string{"store", "copy"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("store copy %s: %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestTokenCreateInPostgres: token create --data DIR makes the token in
// the PostgreSQL store of the server's configuration whose data is DIR,
// and makes no SQLite file there.
func TestTokenCreateInPostgres(t *testing.T) {
	conn := pgtest.Database(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	conf := filepath.Join(dir, "overboot.conf")
	os.WriteFile(conf, []byte("[server]\ndata = "+data+"\nstore = "+conn+"\n"), 0o644)
	tok, err := cli(t, "", "token", "create", "ops", "--data", data, "--config", conf)
	if err != nil || !strings.HasPrefix(tok, "obt_") {
		t.Fatalf("token create: %q %v", tok, err)
	}
	p, err := state.OpenPostgres(context.Background(), conn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if ts, err := p.APITokens(context.Background()); err != nil || len(ts) != 1 || ts[0].Name != "ops" {
		t.Errorf("tokens in PostgreSQL: %+v %v", ts, err)
	}
	if _, err := os.Stat(filepath.Join(data, state.FileName)); err == nil {
		t.Errorf("a SQLite store was made in %s", data)
	}
}

// TestPublishAndCheckOnPostgres: with the server's configuration naming
// a PostgreSQL store, mkimage --store DATA --name publishes the name
// there (not in DATA/state.db), and serve --check-config resolves it
// from there.
func TestPublishAndCheckOnPostgres(t *testing.T) {
	conn := pgtest.Database(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	k := filepath.Join(dir, "k")
	os.WriteFile(k, []byte("K"), 0o644)
	agent := filepath.Join(dir, "agent")
	os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755)
	conf := filepath.Join(dir, "overboot.conf")
	os.WriteFile(conf, []byte("[server]\ndata = "+data+"\nstore = "+conn+"\n[profile default]\nkernel = "+k+"\ninitramfs = initrd\nroot = "+k+"\n"), 0o644)
	saved, savedPkg := defaultConfig, packageConfig
	defer func() { defaultConfig, packageConfig = saved, savedPkg }()
	defaultConfig, packageConfig = conf, filepath.Join(dir, "absent.conf")
	if _, err := cli(t, "", "mkimage", "initramfs", "--agent", agent, "--modules=", "--store", data, "--name", "initrd"); err != nil {
		t.Fatalf("mkimage: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, state.FileName)); err == nil {
		t.Errorf("mkimage made a SQLite store in %s", data)
	}
	out, err := cli(t, "", "serve", "--config", conf, "--check-config")
	if err != nil || !strings.Contains(out, "  initramfs  initrd: image version 1, sha256:") {
		t.Errorf("check-config: %v\n%s", err, out)
	}
}
