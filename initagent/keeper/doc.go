// Package keeper is the process that keeps a lazily read root alive: it
// answers the kernel's NBD requests for the image (internal/nbd) from HTTP
// Range reads (internal/httprange), before and after switch_root, for as
// long as the machine runs. The agent starts it (Start) as a child running
// the agent's own binary with argv[0] "@overboot-keeper": systemd leaves
// processes whose argv[0] begins with '@' alive at shutdown until the root
// is unmounted (its "root storage daemon" convention). The keeper logs to
// the kernel log; when the server goes away its reads wait and retry, so
// the machine's reads wait too instead of failing.
package keeper
