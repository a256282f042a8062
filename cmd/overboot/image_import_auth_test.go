package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/overboot/overboot/internal/testneed"
)

// basicAuthRegistry runs go-containerregistry's in-process registry on
// loopback behind HTTP basic auth for user:password, answering as
// registries do (401 with a Basic challenge), and returns its host:port.
func basicAuthRegistry(t *testing.T, user, password string) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// dockerConfig points $DOCKER_CONFIG (and $HOME, so that no
// ~/.docker/config.json and no podman auth file of this machine counts) at
// a new directory, with a config.json holding auths when it is not "".
func dockerConfig(t *testing.T, auths map[string]string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	if auths == nil {
		return
	}
	var entries []string
	for host, userpass := range auths {
		entries = append(entries, fmt.Sprintf("%q:{%q:%q}", host, "auth", base64.StdEncoding.EncodeToString([]byte(userpass))))
	}
	body := `{"auths":{` + strings.Join(entries, ",") + `}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestImageImportRegistryAuth: image import from a registry that wants
// basic auth takes the credentials from docker's config.json in
// $DOCKER_CONFIG; with none for the registry, or a wrong password, it
// fails saying which registry and that credentials are missing or were
// refused (the password never in it), and publishes nothing.
func TestImageImportRegistryAuth(t *testing.T) {
	testneed.Tool(t, "mksquashfs")
	_, data, _ := testServer(t)
	adminToken(t, data)
	host := basicAuthRegistry(t, "builder", "s3cret-pw")
	ref, err := name.ParseReference(host + "/nodes/root:v1")
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t)
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "builder", Password: "s3cret-pw"})); err != nil {
		t.Fatalf("push to the test registry: %v", err)
	}
	digest, _ := img.Digest()
	src := "docker://" + host + "/nodes/root:v1"
	imp := func() (string, error) {
		return cli(t, "", "image", "import", src, "--name", "web", "--store", data, "-q")
	}

	for _, c := range []struct {
		what  string
		auths map[string]string
		says  string
	}{
		{"no config.json", nil, "registry " + host + " wants credentials, and docker's config.json ($DOCKER_CONFIG, or ~/.docker) has none for it"},
		{"a config.json for another registry", map[string]string{"registry.example": "builder:s3cret-pw"}, "registry " + host + " wants credentials, and docker's config.json ($DOCKER_CONFIG, or ~/.docker) has none for it"},
		{"a wrong password", map[string]string{host: "builder:wrong"}, "registry " + host + " refused the credentials for it from docker's config.json"},
	} {
		dockerConfig(t, c.auths)
		out, err := imp()
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("import with %s: %q %v, want an error saying %q", c.what, out, err, c.says)
		} else if strings.Contains(err.Error(), "s3cret-pw") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("import with %s: the error shows the password: %v", c.what, err)
		}
		t.Logf("with %s: %v", c.what, err)
	}
	if out, err := cli(t, "", "image", "history", "web"); err == nil && strings.Contains(out, "web ") {
		t.Errorf("history after refused imports: %q, want nothing published", out)
	}

	dockerConfig(t, map[string]string{host: "builder:s3cret-pw"})
	out, err := imp()
	if err != nil || !strings.Contains(out, "web version 1: sha256:") {
		t.Fatalf("import with the right credentials: %q %v", out, err)
	}
	out, err = cli(t, "", "image", "history", "web")
	if err != nil || !strings.Contains(out, "from "+src+" ("+digest.String()+")") || strings.Count(out, "\n") != 2 {
		t.Errorf("image history: %q %v, want version 1 only, from %s (%s)", out, err, src, digest)
	}
}
