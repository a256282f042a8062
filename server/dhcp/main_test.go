package dhcp

import (
	"os"
	"testing"

	"github.com/overboot/overboot/internal/pgtest"
)

// TestMain stops the private PostgreSQL cluster (internal/pgtest) that
// the tests of several servers on one store start.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
