//! Healthy sessions, many of which repeat on purpose: re-running tests after each edit,
//! polling a job, undoing an edit, reading several files with one tool, retrying once
//! after a transient error, asking similar confirmations about different records.

use crate::script::*;
use serde_json::json;

pub fn all() -> Vec<Conv> {
    let mut v = Vec::new();
    for f in Fmt::BOTH {
        v.push(edit_test_tool(f));
        v.push(edit_test_fenced(f));
        v.push(poll_tool(f));
        v.push(undo_tool(f));
        v.push(read_many_tool(f));
        v.push(retry_once_tool(f));
        v.push(tau_cancel_two(f));
        v.push(tau_flight_search(f));
        v.push(long_session_tool(f));
        v.push(swe_session(f));
        v.push(read_many_fenced(f));
        v.push(tau_address_recheck(f));
    }
    v.push(poll_fenced(Fmt::OpenAi));
    v.push(undo_fenced(Fmt::Anthropic));
    v.push(retry_once_fenced(Fmt::OpenAi));
    v.push(grep_misses(Fmt::OpenAi));
    v.push(git_status_after_edits(Fmt::Anthropic));
    v.push(flaky_rerun(Fmt::OpenAi));
    v.push(tau_chat_only(Fmt::Anthropic));
    v.push(reread_after_edit(Fmt::OpenAi));
    v.push(parallel_reads(Fmt::Anthropic));
    v.push(tau_wrong_email_then_found(Fmt::OpenAi));
    v
}

fn edit_test_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-edit-test",
        f,
        "tool",
        "edit, run tests, repeat; failures shrink until green",
    );
    c.sys(TOOL_SYS);
    c.user("Make the slugify() tests pass.");
    c.call("", "read_file", json!({"path": "/repo/src/slug.py"}));
    c.res("def slugify(s):\n    return s.lower()", false);
    let runs: [&[(&str, &str)]; 4] = [
        &[
            ("test_spaces", "AssertionError: assert 'a b' == 'a-b'"),
            ("test_unicode", "AssertionError: assert 'é' == 'e'"),
            ("test_strip", "AssertionError: assert ' a' == 'a'"),
        ],
        &[
            ("test_unicode", "AssertionError: assert 'é' == 'e'"),
            ("test_strip", "AssertionError: assert '-a' == 'a'"),
        ],
        &[("test_unicode", "AssertionError: assert 'é' == 'e'")],
        &[],
    ];
    let edits = [
        ("return s.lower()", "return s.lower().replace(' ', '-')"),
        (
            "return s.lower().replace(' ', '-')",
            "return s.strip().lower().replace(' ', '-')",
        ),
        (
            "return s.strip()",
            "s = unicodedata.normalize('NFKD', s).encode('ascii', 'ignore').decode()\n    return s.strip()",
        ),
    ];
    for (k, failed) in runs.iter().enumerate() {
        let out = pytest(&mut c, failed, 6 - failed.len() as u32);
        c.call(
            "Running the tests.",
            "run_tests",
            json!({"path": "tests/test_slug.py"}),
        );
        c.res(&out, false);
        if let Some((o, n)) = edits.get(k) {
            c.call("Next fix.", "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/slug.py", "old_str": o, "new_str": n}));
            c.res("The file /repo/src/slug.py has been edited.", false);
        }
    }
    c.say("All slugify tests pass now.");
    c
}

fn edit_test_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-edit-test-fenced",
        f,
        "fenced",
        "mini-swe-agent: sed edit then pytest, several rounds",
    );
    c.sys(MINI_SYS);
    c.user("<pr_description>\n`Timer.elapsed()` raises TypeError when the timer was never started.\n</pr_description>");
    c.cmd("Let me look at the timer.", "cat src/tinylib/timer.py");
    c.env(0, "import time\n\nclass Timer:\n    def __init__(self):\n        self._start = None\n    def start(self):\n        self._start = time.monotonic()\n    def elapsed(self):\n        return time.monotonic() - self._start");
    let rounds = [
        (
            "Return 0.0 when the timer was not started.",
            "sed -i 's/        return time.monotonic() - self._start/        if self._start is None:\\n            return 0.0\\n        return time.monotonic() - self._start/' src/tinylib/timer.py",
            vec![(
                "test_elapsed_unstarted",
                "AssertionError: assert 0.0 is None",
            )],
        ),
        (
            "The test expects None; adjust.",
            "sed -i 's/return 0.0/return None/' src/tinylib/timer.py",
            vec![("test_elapsed_type", "AssertionError: assert None == 0.0")],
        ),
        (
            "Two tests disagree; the docstring says 0.0. Let me update test_elapsed_unstarted.",
            "sed -i 's/is None/== 0.0/' tests/test_timer.py && sed -i 's/return None/return 0.0/' src/tinylib/timer.py",
            vec![],
        ),
    ];
    for (t, cmd, failed) in rounds {
        c.cmd(t, cmd);
        c.env(0, "");
        let out = pytest(&mut c, &failed, 8 - failed.len() as u32);
        c.cmd("Run the tests.", "python -m pytest tests/test_timer.py -q");
        c.env(if failed.is_empty() { 0 } else { 1 }, &out);
    }
    c.cmd(
        "Tests pass. Submitting.",
        "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached",
    );
    c
}

fn poll_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-poll-job",
        f,
        "tool",
        "polls a training job until it finishes; status moves",
    );
    c.sys("You are an ML ops assistant. You can start and monitor jobs.");
    c.user("Kick off the nightly eval and tell me the score when it's done.");
    c.call(
        "",
        "start_job",
        json!({"pipeline": "nightly-eval", "args": {"model": "m-7b"}}),
    );
    c.res(r#"{"job_id": "job-4821", "status": "queued"}"#, false);
    let states = [
        "queued",
        "queued",
        "running (step 40/400)",
        "running (step 160/400)",
        "running (step 290/400)",
        "running (step 380/400)",
        "succeeded (score=0.812)",
    ];
    for s in states {
        c.call("", "sleep", json!({"seconds": 60}));
        c.res("slept 60 seconds", false);
        let t = c.ts();
        c.call("", "get_job_status", json!({"job_id": "job-4821"}));
        c.res(
            &format!("{{\"job_id\": \"job-4821\", \"status\": \"{s}\", \"updated_at\": \"{t}\"}}"),
            false,
        );
    }
    c.say("The nightly eval finished with a score of 0.812.");
    c
}

fn poll_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-poll-fenced",
        f,
        "fenced",
        "polls a CI run with sleep+status in one command",
    );
    c.sys(MINI_SYS);
    c.user("<pr_description>\nWait for the CI run 9141 to finish and report failures.\n</pr_description>");
    let states = [
        "queued",
        "in_progress (2/9 jobs done)",
        "in_progress (5/9 jobs done)",
        "in_progress (7/9 jobs done)",
        "in_progress (8/9 jobs done)",
        "completed: failure (lint)",
    ];
    for s in states {
        c.cmd(
            "Let me wait and check the run status.",
            "sleep 60 && gh run view 9141 --json status --jq .status",
        );
        c.env(0, s);
    }
    c.cmd(
        "Lint failed; let me see the log.",
        "gh run view 9141 --log-failed | tail -20",
    );
    c.env(0, "lint\tsrc/app.py:12:1: F401 'os' imported but unused");
    c.say("CI run 9141 failed only on lint: `src/app.py:12` has an unused `os` import.");
    c
}

fn undo_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-undo",
        f,
        "tool",
        "an edit makes things worse, is undone, then a different fix works",
    );
    c.sys(TOOL_SYS);
    c.user("Fix the off-by-one in paginate().");
    c.call("", "read_file", json!({"path": "/repo/src/page.py"}));
    c.res("def paginate(items, page, size):\n    start = page * size\n    return items[start:start + size + 1]", false);
    let before = pytest(
        &mut c,
        &[("test_page_size", "AssertionError: assert 4 == 3")],
        5,
    );
    c.call("", "run_tests", json!({"path": "tests/test_page.py"}));
    c.res(&before, false);
    c.call("Maybe pages are 1-based.", "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/page.py", "old_str": "start = page * size", "new_str": "start = (page - 1) * size"}));
    c.res("The file /repo/src/page.py has been edited.", false);
    let worse = pytest(
        &mut c,
        &[
            ("test_page_size", "AssertionError: assert 4 == 3"),
            ("test_first_page", "AssertionError: assert [] == [1, 2, 3]"),
        ],
        4,
    );
    c.call("", "run_tests", json!({"path": "tests/test_page.py"}));
    c.res(&worse, false);
    c.call(
        "That was wrong; undoing.",
        "undo_edit",
        json!({"path": "/repo/src/page.py"}),
    );
    c.res("Last edit to /repo/src/page.py undone successfully.", false);
    let back = pytest(
        &mut c,
        &[("test_page_size", "AssertionError: assert 4 == 3")],
        5,
    );
    c.call("", "run_tests", json!({"path": "tests/test_page.py"}));
    c.res(&back, false);
    c.call("The slice end is the bug.", "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/page.py", "old_str": "start + size + 1", "new_str": "start + size"}));
    c.res("The file /repo/src/page.py has been edited.", false);
    let ok = pytest(&mut c, &[], 6);
    c.call("", "run_tests", json!({"path": "tests/test_page.py"}));
    c.res(&ok, false);
    c.say("Fixed: the slice took one item too many.");
    c
}

fn undo_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-undo-fenced",
        f,
        "fenced",
        "git checkout to undo an edit, then a better one",
    );
    c.sys(MINI_SYS);
    c.user("<pr_description>\n`parse_bool('No')` returns True.\n</pr_description>");
    c.cmd(
        "Let me see the function.",
        "grep -n 'def parse_bool' -A4 src/tinylib/util.py",
    );
    c.env(
        0,
        "12:def parse_bool(s):\n13-    return s not in ('no', 'false', '0')",
    );
    c.cmd(
        "Reproduce.",
        "python -c 'from tinylib.util import parse_bool; print(parse_bool(\"No\"))'",
    );
    c.env(0, "True");
    c.cmd(
        "Try comparing against capitalized values too.",
        "sed -i \"s/('no', 'false', '0')/('no', 'No', 'false', '0')/\" src/tinylib/util.py",
    );
    c.env(0, "");
    c.cmd("Check the diff.", "git diff");
    c.env(0, "-    return s not in ('no', 'false', '0')\n+    return s not in ('no', 'No', 'false', '0')");
    c.cmd(
        "That is a hack; undo it and lowercase the input instead.",
        "git checkout src/tinylib/util.py",
    );
    c.env(0, "Updated 1 path from the index");
    c.cmd(
        "Reproduce again to confirm the original behaviour.",
        "python -c 'from tinylib.util import parse_bool; print(parse_bool(\"No\"))'",
    );
    c.env(0, "True");
    c.cmd(
        "Lowercase the input.",
        "sed -i \"s/return s not in/return s.strip().lower() not in/\" src/tinylib/util.py",
    );
    c.env(0, "");
    c.cmd(
        "Reproduce once more.",
        "python -c 'from tinylib.util import parse_bool; print(parse_bool(\"No\"))'",
    );
    c.env(0, "False");
    c.cmd(
        "Done.",
        "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached",
    );
    c
}

fn read_many_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-read-many",
        f,
        "tool",
        "reads eight files with the same tool",
    );
    c.sys(TOOL_SYS);
    c.user("Summarize how authentication works in this service.");
    c.call("", "list_dir", json!({"path": "/repo/src/auth"}));
    let files = [
        "__init__.py",
        "tokens.py",
        "session.py",
        "middleware.py",
        "password.py",
        "oauth.py",
        "permissions.py",
        "errors.py",
    ];
    c.res(&files.join("\n"), false);
    for (k, name) in files.iter().enumerate() {
        c.call(
            if k == 0 {
                "Reading the modules one by one."
            } else {
                ""
            },
            "read_file",
            json!({"path": format!("/repo/src/auth/{name}")}),
        );
        c.res(&format!("# {name}\n\"\"\"Auth module part {k}.\"\"\"\n\ndef handler_{k}(request):\n    return check(request, scope='s{k}')"), false);
    }
    c.say("Authentication is token based: middleware.py validates the bearer token from tokens.py, sessions are cached in session.py, and permissions.py maps scopes to routes.");
    c
}

fn read_many_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-read-many-fenced",
        f,
        "fenced",
        "cats several files, some missing (rc=1), then greps",
    );
    c.sys(MINI_SYS);
    c.user(
        "<pr_description>\nDocument all environment variables the app reads.\n</pr_description>",
    );
    let files = [
        ("src/app.py", 0),
        ("src/config.py", 0),
        ("src/settings.py", 1),
        ("src/env.py", 1),
        ("src/db.py", 0),
        ("src/cache.py", 0),
    ];
    for (name, rc) in files {
        c.cmd(&format!("Let me read {name}."), &format!("cat {name}"));
        if rc == 0 {
            c.env(
                0,
                &format!(
                    "import os\nVALUE = os.environ.get('{}_URL')",
                    name.trim_start_matches("src/")
                        .trim_end_matches(".py")
                        .to_uppercase()
                ),
            );
        } else {
            c.env(1, &format!("cat: {name}: No such file or directory"));
        }
    }
    c.cmd(
        "Let me grep for any others.",
        "grep -rhn 'os.environ' src | sort -u",
    );
    c.env(0, "src/app.py:2:VALUE = os.environ.get('APP_URL')\nsrc/cache.py:2:VALUE = os.environ.get('CACHE_URL')");
    c.cmd("Write the docs.", "printf '%s\\n' '# Environment' 'APP_URL' 'CONFIG_URL' 'DB_URL' 'CACHE_URL' > ENVIRONMENT.md && cat ENVIRONMENT.md");
    c.env(0, "# Environment\nAPP_URL\nCONFIG_URL\nDB_URL\nCACHE_URL");
    c
}

fn retry_once_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-retry-once",
        f,
        "tool",
        "one retry after a transient 503, then success",
    );
    c.sys("You are a data assistant with HTTP and file tools.");
    c.user("Download today's exchange rates and save EUR/USD to rates.txt.");
    c.call(
        "",
        "http_get",
        json!({"url": "https://api.example.com/rates?base=EUR"}),
    );
    c.res(
        "Error: 503 Service Unavailable (upstream busy, retry later)",
        true,
    );
    c.call(
        "The service was busy; retrying once.",
        "http_get",
        json!({"url": "https://api.example.com/rates?base=EUR"}),
    );
    c.res(
        r#"{"base": "EUR", "rates": {"USD": 1.0842, "GBP": 0.8431}}"#,
        false,
    );
    c.call(
        "",
        "write_file",
        json!({"path": "rates.txt", "content": "EUR/USD 1.0842\n"}),
    );
    c.res("Wrote 15 bytes to rates.txt", false);
    c.say("Saved EUR/USD = 1.0842 to rates.txt.");
    c
}

fn retry_once_fenced(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-retry-once-fenced",
        f,
        "fenced",
        "pip install times out once, retried, succeeds",
    );
    c.sys(MINI_SYS);
    c.user("<pr_description>\nAdd `rich` as a dependency and use it for the CLI table output.\n</pr_description>");
    c.cmd("Install rich.", "pip install rich");
    c.env(1, "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Read timed out.");
    c.cmd("Transient network error; retry.", "pip install rich");
    c.env(
        0,
        "Successfully installed markdown-it-py-3.0.0 mdurl-0.1.2 pygments-2.17.2 rich-13.7.0",
    );
    c.cmd(
        "Add it to requirements.",
        "echo 'rich>=13' >> requirements.txt && tail -3 requirements.txt",
    );
    c.env(0, "attrs>=21\nclick>=8\nrich>=13");
    c
}

fn tau_cancel_two(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-tau-cancel-two",
        f,
        "tau",
        "cancels two orders; near-identical confirmations, each followed by a new action",
    );
    c.sys(TAU_RETAIL_SYS);
    c.user("Hi! I need to cancel two of my orders, I ordered by mistake.");
    c.say("I can help with that. Could you please provide the email address associated with your account?");
    c.user("sure, it's ethan.lopez4911@example.com");
    c.call(
        "",
        "find_user_id_by_email",
        json!({"email": "ethan.lopez4911@example.com"}),
    );
    c.res("ethan_lopez_6291", false);
    c.call(
        "",
        "get_user_details",
        json!({"user_id": "ethan_lopez_6291"}),
    );
    c.res(
        r##"{"user_id": "ethan_lopez_6291", "orders": ["#W8632528", "#W6779827", "#W3042346"]}"##,
        false,
    );
    c.say("Thank you, Ethan. Which orders would you like to cancel?");
    c.user("The two most recent ones, #W6779827 and #W3042346. Reason: ordered by mistake.");
    for (oid, item, price) in [
        ("#W6779827", "Espresso Machine", "2719.16"),
        ("#W3042346", "Electric Kettle", "96.02"),
    ] {
        c.call("", "get_order_details", json!({"order_id": oid}));
        c.res(&format!("{{\"order_id\": \"{oid}\", \"status\": \"pending\", \"items\": [{{\"name\": \"{item}\", \"price\": {price}}}]}}"), false);
        c.say(&format!("Order {oid} is pending and contains: {item} (${price}). I will cancel it with reason 'ordered by mistake' and refund to the original payment method. Do you confirm? (yes/no)"));
        c.user("yes");
        c.call(
            "",
            "cancel_pending_order",
            json!({"order_id": oid, "reason": "ordered by mistake"}),
        );
        c.res(&format!("{{\"order_id\": \"{oid}\", \"status\": \"cancelled\", \"cancel_reason\": \"ordered by mistake\"}}"), false);
        c.say(&format!("Order {oid} has been cancelled. The refund will be processed to your original payment method within 5-7 business days."));
        c.user(if oid == "#W6779827" {
            "Great, now the other one."
        } else {
            "Thanks, that's all."
        });
    }
    c.say("You're welcome! Have a great day.");
    c
}

fn tau_flight_search(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-tau-flight-search",
        f,
        "tau",
        "searches several dates with the same tool, user narrowing down between",
    );
    c.sys(TAU_AIRLINE_SYS);
    c.user(
        "I want to fly from Boston to Seattle sometime between May 16 and 19, cheapest economy.",
    );
    c.say("Sure. Could you provide your user id so I can book it afterwards?");
    c.user("It's mia_li_3668.");
    c.call("", "get_user_details", json!({"user_id": "mia_li_3668"}));
    c.res(r#"{"user_id": "mia_li_3668", "membership": "gold", "payment_methods": {"credit_card_4421486": {"source": "credit_card"}}}"#, false);
    for (d, price) in [
        ("2024-05-16", 167),
        ("2024-05-17", 182),
        ("2024-05-18", 154),
        ("2024-05-19", 171),
    ] {
        c.call(
            "",
            "search_direct_flight",
            json!({"origin": "BOS", "destination": "SEA", "date": d}),
        );
        c.res(&format!("[{{\"flight_number\": \"HAT{}\", \"origin\": \"BOS\", \"destination\": \"SEA\", \"scheduled_departure_time_est\": \"07:00:00\", \"date\": \"{d}\", \"prices\": {{\"economy\": {price}}}}}]", 100 + price), false);
    }
    c.say("The cheapest is HAT254 on 2024-05-18 at $154 in economy. Shall I book it with your credit card ending 1486? (yes/no)");
    c.user("yes please");
    c.call("", "book_reservation", json!({"user_id": "mia_li_3668", "flight_number": "HAT254", "date": "2024-05-18", "cabin": "economy", "payment_id": "credit_card_4421486"}));
    c.res(
        r#"{"reservation_id": "4WQ150", "status": "confirmed"}"#,
        false,
    );
    c.say("Booked! Your reservation id is 4WQ150.");
    c.user("Thanks!");
    c
}

fn tau_address_recheck(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-tau-address-recheck",
        f,
        "tau",
        "re-fetches the order after modifying it; content changed",
    );
    c.sys(TAU_RETAIL_SYS);
    c.user("Please change the address on order #W4817420 to 12 Oak Ave, Austin 78701. I'm lei_khan_4320.");
    c.call("", "get_order_details", json!({"order_id": "#W4817420"}));
    c.res(r##"{"order_id": "#W4817420", "user_id": "lei_khan_4320", "status": "pending", "address": {"address1": "4 Pine Rd", "city": "Austin", "zip": "78704"}}"##, false);
    c.say("Order #W4817420 is pending, shipping to 4 Pine Rd, Austin 78704. I'll change it to 12 Oak Ave, Austin 78701. Confirm? (yes/no)");
    c.user("yes");
    c.call("", "modify_pending_order_address", json!({"order_id": "#W4817420", "address1": "12 Oak Ave", "city": "Austin", "zip": "78701"}));
    c.res(r##"{"order_id": "#W4817420", "status": "pending", "address": {"address1": "12 Oak Ave", "city": "Austin", "zip": "78701"}}"##, false);
    c.call("", "get_order_details", json!({"order_id": "#W4817420"}));
    c.res(r##"{"order_id": "#W4817420", "user_id": "lei_khan_4320", "status": "pending", "address": {"address1": "12 Oak Ave", "city": "Austin", "zip": "78701"}}"##, false);
    c.say("Done: order #W4817420 now ships to 12 Oak Ave, Austin 78701.");
    c.user("Can you also check it's still pending?");
    c.call("", "get_order_details", json!({"order_id": "#W4817420"}));
    c.res(r##"{"order_id": "#W4817420", "user_id": "lei_khan_4320", "status": "pending", "address": {"address1": "12 Oak Ave", "city": "Austin", "zip": "78701"}}"##, false);
    c.say("Yes, it is still pending.");
    c
}

fn long_session_tool(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-long-session",
        f,
        "tool",
        "60+ messages: explore, edit several files, run tests after each",
    );
    c.sys(TOOL_SYS);
    c.user(
        "Add type hints to every public function in src/tinylib and keep mypy and the tests green.",
    );
    c.call("", "list_dir", json!({"path": "/repo/src/tinylib"}));
    let mods = [
        "cli",
        "log",
        "timer",
        "util",
        "durations",
        "export",
        "money",
    ];
    c.res(
        &mods
            .iter()
            .map(|m| format!("{m}.py"))
            .collect::<Vec<_>>()
            .join("\n"),
        false,
    );
    for (k, m) in mods.iter().enumerate() {
        c.call(
            "",
            "read_file",
            json!({"path": format!("/repo/src/tinylib/{m}.py")}),
        );
        c.res(
            &format!("def {m}_main(x, y=None):\n    return helper_{k}(x, y)"),
            false,
        );
        c.call("", "str_replace_editor", json!({"command": "str_replace", "path": format!("/repo/src/tinylib/{m}.py"), "old_str": format!("def {m}_main(x, y=None):"), "new_str": format!("def {m}_main(x: int, y: int | None = None) -> int:")}));
        c.res(
            &format!("The file /repo/src/tinylib/{m}.py has been edited."),
            false,
        );
        let errs = mods.len() - k - 1;
        c.call(
            "",
            "run_command",
            json!({"command": "mypy src/tinylib --strict"}),
        );
        if errs == 0 {
            c.res("Success: no issues found in 7 source files", false);
        } else {
            let first = mods[k + 1];
            c.res(&format!("src/tinylib/{first}.py:1: error: Function is missing a type annotation  [no-untyped-def]\nFound {errs} errors in {errs} files (checked 7 source files)"), false);
        }
    }
    let out = pytest(&mut c, &[], 42);
    c.call("", "run_tests", json!({"path": "tests"}));
    c.res(&out, false);
    c.say("All public functions are annotated; mypy --strict and the 42 tests pass.");
    c
}

fn swe_session(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-swe-session",
        f,
        "swe",
        "SWE-agent: open, edit, reproduce (fails), edit again, reproduce (ok), submit",
    );
    c.sys(SWE_SYS);
    c.user("We're currently solving the following issue within our repository.\nISSUE:\nparse_duration('1h30m') returns 90 instead of 5400\n\n(Open file: n/a)\n(Current directory: /repo)\nbash-$");
    c.swe("Let's first reproduce the issue.", "create reproduce.py");
    c.obs(
        "[File: /repo/reproduce.py (1 lines total)]\n1:",
        "/repo/reproduce.py",
    );
    c.swe("Add the reproduction.", "edit 1:1\nfrom durations import parse_duration\nprint(parse_duration('1h30m'))\nend_of_edit");
    c.obs("[File: /repo/reproduce.py (2 lines total)]\n1:from durations import parse_duration\n2:print(parse_duration('1h30m'))\nFile updated.", "/repo/reproduce.py");
    c.swe("Run it.", "python reproduce.py");
    c.obs("90", "/repo/reproduce.py");
    c.swe("Find the parser.", "find_file \"durations.py\"");
    c.obs(
        "Found 1 matches for \"durations.py\" in /repo:\n/repo/src/durations.py",
        "/repo/reproduce.py",
    );
    c.swe("Open it.", "open src/durations.py");
    c.obs("[File: /repo/src/durations.py (9 lines total)]\n1:import re\n2:\n3:UNITS = {'h': 60, 'm': 1, 's': 1/60}", "/repo/src/durations.py");
    c.swe(
        "Units should be seconds.",
        "edit 3:3\nUNITS = {'h': 3600, 'm': 60, 's': 1}\nend_of_edit",
    );
    c.obs("[File: /repo/src/durations.py (9 lines total)]\n3:UNITS = {'h': 3600, 'm': 60, 's': 1}\nFile updated.", "/repo/src/durations.py");
    c.swe("Run the reproduction again.", "python reproduce.py");
    c.obs("5400", "/repo/src/durations.py");
    c.swe(
        "Run the tests too.",
        "python -m pytest tests/test_durations.py -q",
    );
    c.obs("....F\nFAILED tests/test_durations.py::test_seconds_only - assert 0.5 == 30\n1 failed, 4 passed", "/repo/src/durations.py");
    c.swe(
        "The test expects minutes for a bare number; look at it.",
        "search_file \"def test_seconds_only\" tests/test_durations.py",
    );
    c.obs("Found 1 matches for \"def test_seconds_only\" in /repo/tests/test_durations.py:\nLine 20:def test_seconds_only():", "/repo/src/durations.py");
    c.swe("Open the test.", "open tests/test_durations.py 20");
    c.obs("[File: /repo/tests/test_durations.py (24 lines total)]\n20:def test_seconds_only():\n21:    assert parse_duration('30s') == 0.5", "/repo/tests/test_durations.py");
    c.swe(
        "The test encodes the old unit; update it.",
        "edit 21:21\n    assert parse_duration('30s') == 30\nend_of_edit",
    );
    c.obs("[File: /repo/tests/test_durations.py (24 lines total)]\n21:    assert parse_duration('30s') == 30\nFile updated.", "/repo/tests/test_durations.py");
    c.swe(
        "Re-run the tests.",
        "python -m pytest tests/test_durations.py -q",
    );
    c.obs(".....\n5 passed", "/repo/tests/test_durations.py");
    c.swe("Clean up and submit.", "rm reproduce.py && submit");
    c
}

fn grep_misses(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-grep-misses",
        f,
        "fenced",
        "several greps find nothing (rc=1, empty) before one hits",
    );
    c.sys(MINI_SYS);
    c.user(
        "<pr_description>\nThe `--color` flag is documented but does nothing.\n</pr_description>",
    );
    for pat in ["'--color'", "color=", "use_color", "COLOR", "colour"] {
        c.cmd(
            "Search for the flag handling.",
            &format!("grep -rn {pat} src"),
        );
        c.env(1, "");
    }
    c.cmd(
        "Search docs and tests instead.",
        "grep -rn 'color' docs tests | head",
    );
    c.env(
        0,
        "docs/cli.md:14:  --color   colorize output (default: auto)",
    );
    c.cmd(
        "So it is only documented. Let me look at the CLI parser.",
        "cat src/tinylib/cli.py",
    );
    c.env(0, "import argparse\n\ndef main():\n    p = argparse.ArgumentParser()\n    p.add_argument('--verbose', action='store_true')\n    args = p.parse_args()\n    run()");
    c
}

fn git_status_after_edits(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-git-status",
        f,
        "fenced",
        "git status after each edit; output changes every time",
    );
    c.sys(MINI_SYS);
    c.user(
        "<pr_description>\nAdd SPDX headers to all Python files in src/tinylib.\n</pr_description>",
    );
    let files = ["cli.py", "log.py", "timer.py", "util.py"];
    for (k, name) in files.iter().enumerate() {
        c.cmd(
            "Add the header.",
            &format!("sed -i '1i # SPDX-License-Identifier: MIT' src/tinylib/{name}"),
        );
        c.env(0, "");
        c.cmd("Check status.", "git status --short");
        let listing: Vec<String> = files[..=k]
            .iter()
            .map(|n| format!(" M src/tinylib/{n}"))
            .collect();
        c.env(0, &listing.join("\n"));
    }
    c
}

fn flaky_rerun(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-flaky-rerun",
        f,
        "tool",
        "a flaky test fails, is re-run once unchanged, passes",
    );
    c.sys(TOOL_SYS);
    c.user("Run the integration tests and tell me if the release branch is good.");
    let bad = pytest(
        &mut c,
        &[(
            "test_upload_timeout",
            "TimeoutError: upload did not finish within 30s",
        )],
        57,
    );
    c.call("", "run_tests", json!({"path": "tests/integration"}));
    c.res(&bad, false);
    c.call(
        "That looks like the known flaky upload test; re-running once.",
        "run_tests",
        json!({"path": "tests/integration"}),
    );
    let good = pytest(&mut c, &[], 58);
    c.res(&good, false);
    c.say("The integration suite passes (the one failure was the flaky upload timeout, green on re-run).");
    c
}

fn tau_chat_only(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-tau-chat",
        f,
        "tau",
        "mostly talk, polite phrases recur but the conversation moves",
    );
    c.sys(TAU_RETAIL_SYS);
    c.user("Hi, what's your return policy?");
    c.say("Delivered orders can be returned within 30 days. Items must be unused. Is there anything else I can help you with?");
    c.user("Can I return something I bought as a gift?");
    c.say("Yes, as long as the order belongs to your account. I would need to authenticate you first. Is there anything else I can help you with?");
    c.user("How long do refunds take?");
    c.say("Refunds to the original payment method take 5-7 business days; gift card refunds are immediate. Is there anything else I can help you with?");
    c.user("What if the item is damaged?");
    c.say("Damaged items can be returned as well; please mention the damage when we process the return. Is there anything else I can help you with?");
    c.user("No, that's all.");
    c.say("Thank you for contacting us. Have a great day!");
    c
}

fn reread_after_edit(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-reread-after-edit",
        f,
        "tool",
        "re-reads the same file after each edit; content changes",
    );
    c.sys(TOOL_SYS);
    c.user("Sort the imports in src/app.py and remove unused ones.");
    let versions = [
        "import sys\nimport os\nimport re\n\nprint(os.getcwd())",
        "import os\nimport re\nimport sys\n\nprint(os.getcwd())",
        "import os\n\nprint(os.getcwd())",
    ];
    c.call("", "read_file", json!({"path": "/repo/src/app.py"}));
    c.res(versions[0], false);
    c.call(
        "Sort them.",
        "write_file",
        json!({"path": "/repo/src/app.py", "content": versions[1]}),
    );
    c.res("ok", false);
    c.call("Verify.", "read_file", json!({"path": "/repo/src/app.py"}));
    c.res(versions[1], false);
    c.call(
        "Remove unused.",
        "write_file",
        json!({"path": "/repo/src/app.py", "content": versions[2]}),
    );
    c.res("ok", false);
    c.call(
        "Verify again.",
        "read_file",
        json!({"path": "/repo/src/app.py"}),
    );
    c.res(versions[2], false);
    c.say("Imports sorted; `re` and `sys` were unused and removed.");
    c
}

fn parallel_reads(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-parallel-reads",
        f,
        "tool",
        "parallel tool calls answered in one message, then an edit",
    );
    c.sys(TOOL_SYS);
    c.user("Make the default timeout consistent between client.py and config.py.");
    c.calls(
        "Reading both files.",
        vec![
            ("read_file", json!({"path": "/repo/src/client.py"})),
            ("read_file", json!({"path": "/repo/src/config.py"})),
        ],
    );
    c.results(vec![
        ("DEFAULT_TIMEOUT = 10".into(), false),
        ("DEFAULTS = {'timeout': 30}".into(), false),
    ]);
    c.call("Use the config value.", "str_replace_editor", json!({"command": "str_replace", "path": "/repo/src/client.py", "old_str": "DEFAULT_TIMEOUT = 10", "new_str": "DEFAULT_TIMEOUT = 30"}));
    c.res("The file /repo/src/client.py has been edited.", false);
    c.calls(
        "Re-check both.",
        vec![
            ("read_file", json!({"path": "/repo/src/client.py"})),
            ("read_file", json!({"path": "/repo/src/config.py"})),
        ],
    );
    c.results(vec![
        ("DEFAULT_TIMEOUT = 30".into(), false),
        ("DEFAULTS = {'timeout': 30}".into(), false),
    ]);
    c.say("Both now default to 30 seconds.");
    c
}

fn tau_wrong_email_then_found(f: Fmt) -> Conv {
    let mut c = Conv::new(
        "healthy-tau-wrong-email",
        f,
        "tau",
        "two lookups fail with the same error (user typos), third succeeds",
    );
    c.sys(TAU_RETAIL_SYS);
    c.user("I want to check the status of my order.");
    c.say("Sure. Could you please provide the email address associated with your account?");
    for (k, email) in [
        "amelia.sanchez@example.com",
        "amelia.sanchez4737@exmaple.com",
        "amelia.sanchez4737@example.com",
    ]
    .iter()
    .enumerate()
    {
        if k > 0 {
            c.user(&format!("Sorry, try {email}"));
        } else {
            c.user(email);
        }
        c.call("", "find_user_id_by_email", json!({"email": email}));
        if k < 2 {
            c.res("Error: user not found", false);
            c.say("I couldn't find an account with that email. Could you double-check it?");
        } else {
            c.res("amelia_sanchez_4739", false);
        }
    }
    c.call(
        "",
        "get_user_details",
        json!({"user_id": "amelia_sanchez_4739"}),
    );
    c.res(
        r##"{"user_id": "amelia_sanchez_4739", "orders": ["#W9077205"]}"##,
        false,
    );
    c.call("", "get_order_details", json!({"order_id": "#W9077205"}));
    c.res(r##"{"order_id": "#W9077205", "status": "processed", "fulfillments": [{"tracking_id": ["3928403720"]}]}"##, false);
    c.say("Your order #W9077205 has been processed and shipped; tracking number 3928403720.");
    c.user("Thanks!");
    c
}
