//! Conversations that loop, one or more per pattern and shape. Each marks the point where
//! a careful reviewer would call it a loop: the repeated unit has occurred three times
//! (two full periods for cycles, six stale steps for no-progress).

use crate::script::*;
use serde_json::json;

pub fn all() -> Vec<Conv> {
    let mut v = Vec::new();
    for f in Fmt::BOTH {
        v.push(action_tool(f));
        v.push(action_fenced(f));
        v.push(action_tau(f));
        v.push(failure_tool(f));
        v.push(failure_fenced(f));
        v.push(failure_tau(f));
        v.push(error_tool(f));
        v.push(error_fenced(f));
        v.push(cycle_tool(f));
        v.push(cycle_tau(f));
        v.push(cycle_edit_revert(f));
        v.push(text_tau(f));
        v.push(text_format_error(f));
        v.push(no_progress_tool(f));
        v.push(no_progress_fenced(f));
    }
    v.push(action_noisy_logs(Fmt::OpenAi));
    v.push(failure_swe(Fmt::OpenAi));
    v.push(error_tau(Fmt::OpenAi));
    v.push(error_tau_payment(Fmt::Anthropic));
    v.push(cycle_fenced_abc(Fmt::OpenAi));
    v.push(cycle_fenced_ab(Fmt::Anthropic));
    v.push(text_apology(Fmt::OpenAi));
    v.push(no_progress_tau(Fmt::Anthropic));
    v
}

const CONFIG_PY: &str = "import os\n\nDEFAULTS = {\n    \"timeout\": 30,\n    \"retries\": 3,\n}\n\ndef load(path=None):\n    path = path or os.environ.get(\"APP_CONFIG\", \"config.toml\")\n    with open(path) as f:\n        return parse(f.read())\n";

fn action_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-action-readfile",
        f,
        "tool",
        "re-reads the same file with the same content",
    )
    .looping("repeated_action");
    c.sys(TOOL_SYS);
    c.user("The app ignores APP_CONFIG when it is set to a relative path. Fix it.");
    c.call(
        "Let me find where the config is loaded.",
        "search_code",
        json!({"query": "APP_CONFIG", "path": "/repo"}),
    );
    c.res(
        "src/config.py:9:    path = path or os.environ.get(\"APP_CONFIG\", \"config.toml\")",
        false,
    );
    let thoughts = [
        "Let me read the config module.",
        "I'll look at config.py again to understand the loading.",
        "Let me check the config loader once more.",
        "Reading config.py again.",
        "Let me re-read the file to be sure.",
        "Looking at src/config.py.",
    ];
    for (k, t) in thoughts.iter().enumerate() {
        c.call(t, "read_file", json!({"path": "/repo/src/config.py"}));
        c.res(CONFIG_PY, false);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn action_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-action-cat",
        f,
        "fenced",
        "mini-swe-agent cats the same file over and over",
    )
    .looping("repeated_action");
    c.sys(MINI_SYS);
    c.user("<pr_description>\nConsider the following PR description:\n`setup.cfg` lists a wrong minimum Python version; pip refuses to install on 3.8.\n</pr_description>");
    c.cmd("Let me look at the repository structure first.", "ls -la");
    c.env(0, "total 48\ndrwxr-xr-x 6 root root 4096 Jun 11 14:02 .\n-rw-r--r-- 1 root root  912 Jun 11 14:02 setup.cfg\n-rw-r--r-- 1 root root  101 Jun 11 14:02 setup.py\ndrwxr-xr-x 4 root root 4096 Jun 11 14:02 src");
    let cfg = "[metadata]\nname = tinylib\nversion = 0.4.1\n\n[options]\npackages = find:\npython_requires = >=3.9\ninstall_requires =\n    attrs>=21";
    let th = [
        "I need to see setup.cfg to find python_requires.",
        "Let me view setup.cfg to check the python_requires line.",
        "I should double-check the contents of setup.cfg.",
        "Let me look at setup.cfg again before editing.",
        "I'll print setup.cfg to verify the value.",
        "Let me inspect setup.cfg.",
    ];
    for (k, t) in th.iter().enumerate() {
        c.cmd(t, "cat setup.cfg");
        c.env(0, cfg);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn action_tau(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-action-tau-order",
        f,
        "tau",
        "retail agent re-fetches the same order while the user talks",
    )
    .looping("repeated_action");
    c.sys(TAU_RETAIL_SYS);
    c.user("Hi, I'd like to return the headphones from my last order.");
    c.say("I can help with that. Could you please provide the email address associated with your account?");
    c.user("It's mei.kovacs8232@example.com");
    c.call(
        "",
        "find_user_id_by_email",
        json!({"email": "mei.kovacs8232@example.com"}),
    );
    c.res("mei_kovacs_8020", false);
    c.call(
        "",
        "get_user_details",
        json!({"user_id": "mei_kovacs_8020"}),
    );
    c.res(r##"{"user_id": "mei_kovacs_8020", "name": {"first_name": "Mei", "last_name": "Kovacs"}, "orders": ["#W6390527", "#W7800651"]}"##, false);
    let order = r##"{"order_id": "#W6390527", "user_id": "mei_kovacs_8020", "status": "delivered", "items": [{"name": "Headphones", "item_id": "8555936349", "price": 226.49, "options": {"type": "over-ear", "connectivity": "wireless"}}], "payment_history": [{"transaction_type": "payment", "amount": 226.49, "payment_method_id": "paypal_7644869"}]}"##;
    let users = [
        "Yes that one, the over-ear ones.",
        "Can you just process the return please?",
        "I already said yes, return them to my paypal.",
        "Why do you keep checking? Please return them.",
        "Hello? Are you still there?",
        "Please, just do the return.",
    ];
    for (k, u) in users.iter().enumerate() {
        c.call("", "get_order_details", json!({"order_id": "#W6390527"}));
        c.res(order, false);
        if k == 2 {
            c.evident();
        }
        c.say(&format!("I see your order #W6390527 contains the wireless over-ear Headphones (${}). Let me check the details.", "226.49"));
        c.user(u);
    }
    c
}

fn action_noisy_logs(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-action-noisy-logs",
        f,
        "tool",
        "same log query; results differ only in timestamps, durations and request ids",
    )
    .looping("repeated_action");
    c.sys("You are an SRE assistant. Investigate alerts with the tools provided.");
    c.user("Checkout latency alert fired 10 minutes ago. What's going on?");
    for k in 0..6 {
        let rid = c.uuid();
        let ts1 = c.ts();
        let ts2 = c.ts();
        let d = c.dur();
        let out = format!(
            "query took {d}\nrequest_id={rid}\n{ts1} WARN checkout-api upstream payment-gw slow: p99=2300ms\n{ts2} WARN checkout-api upstream payment-gw slow: p99=2300ms\n2 matching lines"
        );
        let rid2 = c.uuid();
        c.call(
            "Let me search the checkout logs.",
            "search_logs",
            json!({"service": "checkout-api", "query": "slow", "since": "15m", "request_id": rid2}),
        );
        c.res(&out, false);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn failure_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-failure-str-replace",
        f,
        "tool",
        "the same str_replace fails with the same error",
    )
    .looping("repeated_failure");
    c.sys(TOOL_SYS);
    c.user("Make `load()` resolve relative APP_CONFIG paths against the repository root.");
    c.call("", "read_file", json!({"path": "/repo/src/config.py"}));
    c.res(CONFIG_PY, false);
    let th = [
        "I'll update the path resolution.",
        "Let me try the replacement again.",
        "Retrying the edit.",
        "Let me apply the change once more.",
        "Trying again.",
    ];
    for (k, t) in th.iter().enumerate() {
        c.call(t, "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/config.py", "old_str": "    path = path or os.environ.get('APP_CONFIG', 'config.toml')", "new_str": "    path = os.path.abspath(path or os.environ.get('APP_CONFIG', 'config.toml'))"}));
        c.res("Error: No replacement was performed, old_str `    path = path or os.environ.get('APP_CONFIG', 'config.toml')` did not appear verbatim in /repo/src/config.py.", true);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn failure_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-failure-reproduce",
        f,
        "fenced",
        "re-runs the same failing script; traceback differs only in addresses and line numbers",
    )
    .looping("repeated_failure");
    c.sys(MINI_SYS);
    c.user("<pr_description>\n`Timer.elapsed()` raises TypeError when the timer was never started.\n</pr_description>");
    c.cmd("Let me create a reproduction script.", "cat <<'EOF' > reproduce.py\nfrom tinylib.timer import Timer\nprint(Timer().elapsed())\nEOF");
    c.env(0, "");
    let th = [
        "Now let me run the reproduction.",
        "Let me run it again to see the error.",
        "Running the script again.",
        "Let me try running reproduce.py once more.",
        "Running again.",
    ];
    for (k, t) in th.iter().enumerate() {
        let addr = c.hex(12);
        let out = format!(
            "Traceback (most recent call last):\n  File \"/repo/reproduce.py\", line 2, in <module>\n    print(Timer().elapsed())\n  File \"/repo/src/tinylib/timer.py\", line {}, in elapsed\n    return time.monotonic() - self._start\nTypeError: unsupported operand type(s) for -: 'float' and 'NoneType' (timer at 0x{addr})",
            40 + k
        );
        c.cmd(t, "python reproduce.py");
        c.env(1, &out);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn failure_swe(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-failure-swe-edit",
        f,
        "swe",
        "SWE-agent resubmits the same edit that the linter rejects",
    )
    .looping("repeated_failure");
    c.sys(SWE_SYS);
    c.user("We're currently solving the following issue within our repository.\nISSUE:\nparse_duration('1h30m') returns 90 instead of 5400\n\n(Open file: n/a)\n(Current directory: /repo)\nbash-$");
    c.swe("Let's open the parser.", "open src/durations.py");
    c.obs("[File: /repo/src/durations.py (30 lines total)]\n1:import re\n2:\n3:UNITS = {'h': 60, 'm': 1, 's': 1/60}\n4:\n5:def parse_duration(s):\n6:    total = 0\n7:    for n, u in re.findall(r'(\\d+)([hms])', s):\n8:        total += int(n) * UNITS[u]\n9:    return total", "/repo/src/durations.py");
    let edit = "edit 3:3\n    UNITS = {'h': 3600, 'm': 60, 's': 1}\nend_of_edit";
    let th = [
        "The units are in minutes; they should be seconds.",
        "Let me fix the edit.",
        "I'll try the edit again.",
        "Trying once more.",
        "Let me apply this fix.",
    ];
    for (k, t) in th.iter().enumerate() {
        c.swe(t, edit);
        c.obs("Your proposed edit has introduced new syntax error(s). Please read this error message carefully and then retry editing the file.\n\nERRORS:\n- E999 IndentationError: unexpected indent\n\nThis is how your edit would have looked if applied\n-------------------------------------------------\n[File: /repo/src/durations.py (30 lines total)]\n3:    UNITS = {'h': 3600, 'm': 60, 's': 1}\n-------------------------------------------------\nYour changes have NOT been applied. Please fix your edit command and try again.", "/repo/src/durations.py");
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn failure_tau(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-failure-tau-cancel",
        f,
        "tau",
        "agent retries an impossible cancellation as the user insists",
    )
    .looping("repeated_failure");
    c.sys(TAU_RETAIL_SYS);
    c.user("Cancel order #W2378156 please, my user id is yusuf_rossi_9620.");
    c.call("", "get_order_details", json!({"order_id": "#W2378156"}));
    c.res(r##"{"order_id": "#W2378156", "user_id": "yusuf_rossi_9620", "status": "delivered", "items": [{"name": "Keyboard", "price": 237.81}]}"##, false);
    c.say("Order #W2378156 contains a Keyboard ($237.81). Do you confirm you want to cancel it because it is no longer needed? (yes/no)");
    let users = [
        "yes",
        "Yes! Cancel it.",
        "Try again please.",
        "It should work, try again.",
        "Please try one more time.",
    ];
    for (k, u) in users.iter().enumerate() {
        c.user(u);
        c.call(
            "",
            "cancel_pending_order",
            json!({"order_id": "#W2378156", "reason": "no longer needed"}),
        );
        c.res("Error: non-pending order cannot be cancelled", true);
        if k == 2 {
            c.evident();
        }
        c.say("I'm sorry, the cancellation did not go through. Let me try again if you'd like.");
    }
    c
}

fn error_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-error-network",
        f,
        "tool",
        "varied URLs, same network error",
    )
    .looping("repeated_error");
    c.sys(TOOL_SYS);
    c.user("Check which version of `attrs` is the latest and pin it in requirements.txt.");
    let urls = [
        "https://pypi.org/pypi/attrs/json",
        "https://pypi.org/simple/attrs/",
        "https://pypi.python.org/pypi/attrs/json",
        "https://files.pythonhosted.org/packages/attrs/",
        "https://pypi.org/project/attrs/",
        "https://libraries.io/pypi/attrs",
    ];
    for (k, u) in urls.iter().enumerate() {
        c.call(
            "Let me fetch the package metadata.",
            "http_get",
            json!({"url": u, "timeout": 10}),
        );
        c.res(
            "Error: ProxyError: Unable to connect to proxy (407 Proxy Authentication Required)",
            true,
        );
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn error_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-error-module",
        f,
        "fenced",
        "different commands, same ModuleNotFoundError",
    )
    .looping("repeated_error");
    c.sys(MINI_SYS);
    c.user(
        "<pr_description>\n`stats.mean` returns wrong value for numpy arrays.\n</pr_description>",
    );
    let cmds = [
        (
            "Let me run the tests.",
            "python -m pytest tests/test_stats.py -q",
        ),
        (
            "Let me try running the module directly.",
            "python -c 'import stats; print(stats.mean([1,2,3]))'",
        ),
        ("Let me try with python3.", "python3 -m pytest -q tests"),
        (
            "Maybe the path is wrong; let me run from src.",
            "cd src && python -c 'import stats'",
        ),
        ("Let me run the reproduce script.", "python reproduce.py"),
        ("Let me try the example.", "python examples/mean.py"),
    ];
    for (k, (t, cmd)) in cmds.iter().enumerate() {
        let line = 3 + k;
        c.cmd(t, cmd);
        c.env(1, &format!("Traceback (most recent call last):\n  File \"/repo/src/stats.py\", line {line}, in <module>\n    import numpy as np\nModuleNotFoundError: No module named 'numpy'"));
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn error_tau(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-error-tau-date",
        f,
        "tau",
        "agent tries date formats, same validation error, user between",
    )
    .looping("repeated_error");
    c.sys(TAU_AIRLINE_SYS);
    c.user("I need a flight from JFK to SEA on May 20th.");
    let dates = [
        "May 20",
        "20/05/2024",
        "05-20-2024",
        "2024/05/20",
        "20 May 2024",
        "May 20th 2024",
    ];
    let users = [
        "May 20th, like I said.",
        "The 20th of May.",
        "Can't you find any flights?",
        "Hello?",
        "Please check again.",
        "Any luck?",
    ];
    for (k, d) in dates.iter().enumerate() {
        c.call(
            "",
            "search_direct_flight",
            json!({"origin": "JFK", "destination": "SEA", "date": d}),
        );
        c.res("Error: invalid date format, expected YYYY-MM-DD", false);
        if k == 2 {
            c.evident();
        }
        c.say("I'm having trouble searching for that date. Let me try again.");
        c.user(users[k]);
    }
    c
}

fn error_tau_payment(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-error-tau-payment",
        f,
        "tau",
        "agent guesses payment ids, same error",
    )
    .looping("repeated_error");
    c.sys(TAU_AIRLINE_SYS);
    c.user("Book the 10:00 flight HAT045 for me, user id olivia_gonzalez_2305, pay with my card.");
    let ids = [
        "credit_card_1",
        "card_olivia",
        "credit_card_2305",
        "visa_2305",
        "credit_card",
        "card_1",
    ];
    for (k, id) in ids.iter().enumerate() {
        c.call("", "book_reservation", json!({"user_id": "olivia_gonzalez_2305", "flight_number": "HAT045", "date": "2024-05-20", "payment_id": id, "cabin": "economy"}));
        c.res("Error: payment method not found", true);
        if k == 2 {
            c.evident();
        }
        if k % 2 == 1 {
            c.say("There seems to be a problem with the payment method. Let me try another one.");
            c.user("Just use my card, the one on file.");
        }
    }
    c
}

fn cycle_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-cycle-two-files",
        f,
        "tool",
        "alternates between two files without acting",
    )
    .looping("cycle");
    c.sys(TOOL_SYS);
    c.user("Why does `Client.retry` not respect the configured timeout?");
    let client = "class Client:\n    def __init__(self, cfg):\n        self.cfg = cfg\n\n    def retry(self, fn):\n        for _ in range(self.cfg.retries):\n            try:\n                return fn(timeout=DEFAULT_TIMEOUT)\n            except IOError:\n                pass";
    for k in 0..5 {
        c.call(
            "Let me look at the client.",
            "read_file",
            json!({"path": "/repo/src/client.py"}),
        );
        c.res(client, false);
        c.call(
            "And the config module.",
            "read_file",
            json!({"path": "/repo/src/config.py"}),
        );
        c.res(CONFIG_PY, false);
        if k == 1 {
            c.evident();
        }
    }
    c
}

fn cycle_tau(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-cycle-tau",
        f,
        "tau",
        "agent alternates user lookup and order lookup with the user talking",
    )
    .looping("cycle");
    c.sys(TAU_RETAIL_SYS);
    c.user("I want to change the shipping address of my pending order. I'm noah_brown_6181.");
    let user = r##"{"user_id": "noah_brown_6181", "address": {"address1": "986 Sunset Drive", "city": "Denver", "zip": "80279"}, "orders": ["#W7678072"]}"##;
    let order = r##"{"order_id": "#W7678072", "status": "pending", "address": {"address1": "986 Sunset Drive", "city": "Denver", "zip": "80279"}}"##;
    let users = [
        "The new address is 55 Elm St, Denver 80203.",
        "Yes, 55 Elm St.",
        "Did you change it?",
        "Please update it.",
        "Still waiting...",
    ];
    for (k, u) in users.iter().enumerate() {
        c.call(
            "",
            "get_user_details",
            json!({"user_id": "noah_brown_6181"}),
        );
        c.res(user, false);
        c.call("", "get_order_details", json!({"order_id": "#W7678072"}));
        c.res(order, false);
        if k == 1 {
            c.evident();
        }
        c.say("Your order #W7678072 is pending and ships to 986 Sunset Drive, Denver 80279. What would you like the new address to be?");
        c.user(u);
    }
    c
}

fn cycle_edit_revert(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-cycle-edit-revert",
        f,
        "tool",
        "flips an edit back and forth, test results flip too",
    )
    .looping("cycle");
    c.sys(TOOL_SYS);
    c.user("test_round_half fails; fix rounding in money.py.");
    let a = (
        "return round(x, 2)",
        "return math.floor(x * 100 + 0.5) / 100",
    );
    for k in 0..4 {
        c.call("Let me switch to floor-based rounding.", "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/money.py", "old_str": a.0, "new_str": a.1}));
        c.res("The file /repo/src/money.py has been edited.", false);
        let out = pytest(
            &mut c,
            &[("test_round_negative", "assert -1.01 == -1.0")],
            11,
        );
        c.call("", "run_tests", json!({"path": "tests/test_money.py"}));
        c.res(&out, true);
        c.call("That broke negatives. Let me go back to round().", "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/money.py", "old_str": a.1, "new_str": a.0}));
        c.res("The file /repo/src/money.py has been edited.", false);
        let out = pytest(&mut c, &[("test_round_half", "assert 2.67 == 2.68")], 11);
        c.call("", "run_tests", json!({"path": "tests/test_money.py"}));
        c.res(&out, true);
        if k == 1 {
            c.evident();
        }
    }
    c
}

fn cycle_fenced_abc(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-cycle-abc",
        f,
        "fenced",
        "ls / cat / grep cycle of period three",
    )
    .looping("cycle");
    c.sys(MINI_SYS);
    c.user("<pr_description>\nThe CLI flag --verbose is ignored.\n</pr_description>");
    for k in 0..4 {
        c.cmd("Let me look at the source tree.", "ls src/tinylib");
        c.env(0, "__init__.py\ncli.py\nlog.py\ntimer.py");
        c.cmd("Let me read the CLI entry point.", "cat src/tinylib/cli.py");
        c.env(0, "import argparse\n\ndef main():\n    p = argparse.ArgumentParser()\n    p.add_argument('--verbose', action='store_true')\n    args = p.parse_args()\n    run()");
        c.cmd(
            "Let me search for where verbosity is used.",
            "grep -rn verbose src/",
        );
        c.env(
            0,
            "src/tinylib/cli.py:5:    p.add_argument('--verbose', action='store_true')",
        );
        if k == 1 {
            c.evident();
        }
    }
    c
}

fn cycle_fenced_ab(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-cycle-stash",
        f,
        "fenced",
        "git stash / stash pop cycle",
    )
    .looping("cycle");
    c.sys(MINI_SYS);
    c.user(
        "<pr_description>\nUpgrade the lockfile without losing local changes.\n</pr_description>",
    );
    for k in 0..5 {
        let h = c.hex(7);
        c.cmd("Let me stash my changes before upgrading.", "git stash");
        c.env(
            0,
            &format!("Saved working directory and index state WIP on main: {h} bump deps"),
        );
        c.cmd(
            "Actually I need those changes; let me restore them.",
            "git stash pop",
        );
        c.env(0, "On branch main\nChanges not staged for commit:\n\tmodified:   poetry.lock\nDropped refs/stash@{0}");
        if k == 1 {
            c.evident();
        }
    }
    c
}

fn text_tau(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-text-reask",
        f,
        "tau",
        "agent keeps asking for the same identification",
    )
    .looping("repeated_text");
    c.sys(TAU_RETAIL_SYS);
    c.user("Hey, my order never arrived and I want a refund.");
    let asks = [
        "I'm sorry to hear that. To help you, could you please provide the email address associated with your account, or your name and zip code?",
        "I understand. To proceed, could you please provide the email address associated with your account, or your full name and zip code?",
        "Thank you. To look up your account, could you please provide the email address associated with your account, or your name and zip code?",
        "I'm sorry, to help you I need the email address associated with your account, or your name and zip code. Could you please provide it?",
        "To proceed, could you please provide the email address associated with your account, or your name and zip code?",
    ];
    let users = [
        "It was supposed to arrive last week!",
        "I just want my money back.",
        "I don't remember which email I used.",
        "Why do you need that?",
        "Ugh. Fine, whatever.",
    ];
    for (k, (a, u)) in asks.iter().zip(users).enumerate() {
        c.say(a);
        c.user(u);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn text_format_error(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-text-format-error",
        f,
        "fenced",
        "mini-swe-agent answers without a command block; the harness keeps complaining",
    )
    .looping("repeated_text");
    c.sys(MINI_SYS);
    c.user("<pr_description>\nRename `get_cfg` to `get_config` everywhere.\n</pr_description>");
    c.cmd("Let me find all usages.", "grep -rln get_cfg src tests");
    c.env(0, "src/app.py\nsrc/config.py\ntests/test_config.py");
    c.cmd(
        "Let me rename everywhere with sed.",
        "sed -i 's/get_cfg/get_config/g' src/app.py src/config.py tests/test_config.py",
    );
    c.env(0, "");
    let says = [
        "I have renamed get_cfg to get_config in all files. The task is complete.",
        "I have renamed `get_cfg` to `get_config` in all the files. The task is now complete.",
        "The rename of get_cfg to get_config is done in all files. The task is complete.",
        "I have renamed get_cfg to get_config in every file, so the task is complete.",
        "I renamed get_cfg to get_config in all files. The task is complete.",
    ];
    for (k, s) in says.iter().enumerate() {
        c.say(s);
        c.user("Please always provide EXACTLY ONE action in triple backticks, found 0 actions.\n\nPlease format your action in triple backticks as shown in <response_example>.\n\nIf you have completed your assignment, please consult the first message about how to submit your solution (you will not be able to continue working on this task after that).");
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn text_apology(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-text-apology",
        f,
        "tool",
        "agent restates the same plan without acting",
    )
    .looping("repeated_text");
    c.sys(TOOL_SYS);
    c.user("Add a --dry-run flag to the deploy script.");
    c.call("", "read_file", json!({"path": "/repo/scripts/deploy.py"}));
    c.res(
        "import sys\n\ndef main(argv):\n    target = argv[1]\n    push(target)\n",
        false,
    );
    let says = [
        "I apologize for the confusion. My plan is: add an argparse parser with a --dry-run flag, then skip push() when it is set. Let me know if that works.",
        "Apologies for the confusion. My plan is to add an argparse parser with a --dry-run flag, and skip push() when it is set. Let me know if this works.",
        "Sorry for the confusion. The plan is: add an argparse parser with a --dry-run flag, then skip push() when it is set. Let me know if that works for you.",
        "I apologize for the confusion. My plan: add an argparse parser with a --dry-run flag and skip push() when the flag is set. Let me know if that works.",
    ];
    let users = [
        "Sounds fine, go ahead.",
        "Yes, do it.",
        "Please just make the change.",
        "Go!",
    ];
    for (k, (s, u)) in says.iter().zip(users).enumerate() {
        c.say(s);
        c.user(u);
        if k == 2 {
            c.evident();
        }
    }
    c
}

fn no_progress_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-noprogress-wander",
        f,
        "tool",
        "wanders between already-seen actions in no fixed order",
    )
    .looping("no_progress");
    c.sys(TOOL_SYS);
    c.user("The `export` command writes an empty CSV. Fix it.");
    let acts: [(&str, serde_json::Value, &str); 4] = [
        (
            "read_file",
            json!({"path": "/repo/src/export.py"}),
            "def export(rows, path):\n    with open(path, 'w') as f:\n        w = csv.writer(f)\n    for r in rows:\n        w.writerow(r)",
        ),
        (
            "read_file",
            json!({"path": "/repo/tests/test_export.py"}),
            "def test_export(tmp_path):\n    export([[1, 2]], tmp_path / 'o.csv')\n    assert (tmp_path / 'o.csv').read_text() == '1,2\\r\\n'",
        ),
        (
            "search_code",
            json!({"query": "def export"}),
            "src/export.py:1:def export(rows, path):",
        ),
        (
            "list_dir",
            json!({"path": "/repo/src"}),
            "__init__.py\nexport.py\ncli.py",
        ),
    ];
    for (name, args, out) in &acts {
        c.call("", name, args.clone());
        c.res(out, false);
    }
    let order = [2, 0, 3, 1, 1, 0, 2, 3, 0, 2, 1, 3];
    for (k, i) in order.iter().enumerate() {
        let (name, args, out) = &acts[*i];
        c.call("Let me check this again.", name, args.clone());
        c.res(out, false);
        if k == 5 {
            c.evident();
        }
    }
    c
}

fn no_progress_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-noprogress-fenced",
        f,
        "fenced",
        "mini-swe-agent re-runs earlier inspection commands in shifting order",
    )
    .looping("no_progress");
    c.sys(MINI_SYS);
    c.user("<pr_description>\n`log.warn` prints twice when the root logger is configured.\n</pr_description>");
    let acts = [
        (
            "cat src/tinylib/log.py",
            "import logging\n\ndef warn(msg):\n    log = logging.getLogger('tinylib')\n    log.addHandler(logging.StreamHandler())\n    log.warning(msg)",
        ),
        (
            "grep -rn addHandler src",
            "src/tinylib/log.py:5:    log.addHandler(logging.StreamHandler())",
        ),
        (
            "git status",
            "On branch main\nnothing to commit, working tree clean",
        ),
        ("ls src/tinylib", "__init__.py\ncli.py\nlog.py\ntimer.py"),
        ("python -c 'import tinylib.log as l; l.warn(\"x\")'", "x\nx"),
    ];
    for (cmd, out) in &acts {
        c.cmd("Let me look.", cmd);
        c.env(0, out);
    }
    let order = [1, 4, 0, 2, 0, 3, 4, 1, 2, 0, 4, 3];
    let th = [
        "Let me check the handler setup again.",
        "Let me look again.",
        "I want to verify this.",
        "Let me re-check.",
    ];
    for (k, i) in order.iter().enumerate() {
        let (cmd, out) = acts[*i];
        let t = th[k % th.len()];
        c.cmd(t, cmd);
        c.env(0, out);
        if k == 5 {
            c.evident();
        }
    }
    c
}

fn no_progress_tau(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "loop-noprogress-tau",
        f,
        "tau",
        "agent re-queries the same records in shifting order while the user waits",
    )
    .looping("no_progress");
    c.sys(TAU_RETAIL_SYS);
    c.user("I'm sara_doe_496. Exchange the blue t-shirt in order #W1 for a red one.");
    let user = r##"{"user_id": "sara_doe_496", "orders": ["#W1", "#W2"], "payment_methods": {"gift_card_3": {"balance": 40}}}"##;
    let o1 = r##"{"order_id": "#W1", "status": "delivered", "items": [{"name": "T-Shirt", "item_id": "9612497925", "options": {"color": "blue", "size": "M"}}]}"##;
    let prod = r##"{"name": "T-Shirt", "product_id": "9523456873", "variants": {"9612497925": {"options": {"color": "blue", "size": "M"}, "available": true}, "8124970213": {"options": {"color": "red", "size": "M"}, "available": true}}}"##;
    let acts: [(&str, serde_json::Value, &str); 3] = [
        ("get_user_details", json!({"user_id": "sara_doe_496"}), user),
        ("get_order_details", json!({"order_id": "#W1"}), o1),
        (
            "get_product_details",
            json!({"product_id": "9523456873"}),
            prod,
        ),
    ];
    for (n, a, o) in &acts {
        c.call("", n, a.clone());
        c.res(o, false);
    }
    let order = [1, 2, 0, 2, 1, 1, 0, 2, 0, 1, 2, 1];
    let users = ["So can you exchange it?", "Red, size M.", "Is it done?"];
    for (k, i) in order.iter().enumerate() {
        let (n, a, o) = &acts[*i];
        c.call("", n, a.clone());
        c.res(o, false);
        if k == 5 {
            c.evident();
        }
        if k % 3 == 2 {
            c.say("Let me double check the details of your order and the available variants.");
            c.user(users[(k / 3) % users.len()]);
        }
    }
    c
}
