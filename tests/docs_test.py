"""The documents are part of the house: their links lead somewhere and their counts are true.

`README.md` and `docs/*.md` link to each other and to files of the checkout,
and state counts of the code (the mutants, the command lines of the error
test, ...). Moving text or code breaks links; adding a mutant or a case makes
a count stale. Both are checked here, from the files alone (fast: nothing is
trained or run).
"""

import glob
import os
import re
import sys
import unicodedata
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
DOCUMENTS = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))

FENCE = re.compile(r"^ {0,3}(```|~~~)")
# [text](target) and ![alt](target); the target ends at the first space or ')'
# (an optional "title" may follow). Text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _read(path):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    return f.read()


def _prose_lines(text):
  """The lines outside fenced code blocks, with their line numbers."""
  inside = False
  for number, line in enumerate(text.splitlines(), 1):
    if FENCE.match(line):
      inside = not inside
      continue
    if not inside:
      yield number, line


def _slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
  text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
  kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
  return kept.replace(" ", "-")


def anchors(path):
  """Every `#anchor` a Markdown file offers: its headings' slugs (-1, -2 for repeats), HTML ids."""
  found, seen = set(), {}
  text = _read(path)
  for _, line in _prose_lines(text):
    match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
    if match:
      slug = _slug(match.group(1))
      found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
      seen[slug] = seen.get(slug, 0) + 1
  found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
  return found


def links(path):
  """`(line number, target)` of every Markdown link outside code."""
  for number, line in _prose_lines(_read(path)):
    for match in LINK.finditer(CODE_SPAN.sub("", line)):
      yield number, match.group(1)


def test_slugs_are_githubs():
  assert _slug("Results so far (2-core CPU unless a row says otherwise)") == (
      "results-so-far-2-core-cpu-unless-a-row-says-otherwise")
  assert _slug("7. Published numbers and ours") == "7-published-numbers-and-ours"
  assert _slug("Where `data_dir` points") == "where-data_dir-points"
  assert _slug("Does it work?") == "does-it-work"
  assert _slug("Fréchet distance") == "fréchet-distance"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_relative_link_reaches_a_file_and_heading_of_the_checkout(document):
  folder = os.path.dirname(os.path.join(ROOT, document))
  broken = []
  for number, target in links(document):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not ours to check
      continue
    path, _, anchor = target.partition("#")
    path = urllib.parse.unquote(path)
    resolved = (os.path.normpath(os.path.join(folder, path)) if path
                else os.path.join(ROOT, document))
    where = f"{document}:{number}: {target}"
    if os.path.isabs(path) or os.path.relpath(resolved, ROOT).startswith(os.pardir):
      broken.append(f"{where} points outside the repository")
    elif not os.path.exists(resolved):
      broken.append(f"{where}: no such file {os.path.relpath(resolved, ROOT)}")
    elif anchor and resolved.endswith(".md"):
      if urllib.parse.unquote(anchor) not in anchors(os.path.relpath(resolved, ROOT)):
        broken.append(f"{where}: no heading #{anchor} in {os.path.relpath(resolved, ROOT)}")
  assert not broken, "\n".join(broken)


def test_the_readmes_map_links_every_page_of_docs():
  linked = {os.path.normpath(t.partition("#")[0]) for _, t in links("README.md")}
  pages = [d for d in DOCUMENTS if d.startswith("docs" + os.sep)]
  assert [p for p in pages if p not in linked] == []


# ---------------------------------------------------------------------------
# Counts the documents state.


def _mutants():
  sys.path.insert(0, TESTS)
  import mutants  # pylint: disable=import-outside-toplevel
  return mutants.MUTANTS


def _cli_cases():
  sys.path.insert(0, TESTS)
  import cli_errors_test  # pylint: disable=import-outside-toplevel
  return cli_errors_test.CASES


def _stored_ladder_results(folder):
  """The ladder's stored results under `docs/results/<folder>`: `(rung, file)` pairs."""
  pattern = os.path.join(ROOT, "docs", "results", folder, "runs", "*", "seed*_step*.json")
  return [tuple(p.split(os.sep)[-2:]) for p in glob.glob(pattern)]


def _cifar10_seeds_at(steps):
  """`{rung: seeds stored at steps}` of the CIFAR-10 ladder's page."""
  pattern = os.path.join(ROOT, "docs", "results_cifar10", "runs", "*", f"seed*_step{steps}.json")
  seeds = {}
  for path in glob.glob(pattern):
    rung = path.split(os.sep)[-2]
    seeds[rung] = seeds.get(rung, 0) + 1
  return seeds


def _cifar10_table():
  from leae_jax.experiments import ladder  # pylint: disable=import-outside-toplevel
  return ladder.aggregate(ladder.load_results(os.path.join(ROOT, "docs", "results_cifar10")))


def _cifar10_census_at_one_epoch():
  """`(verdicts drawn, decided)` of the CIFAR-10 page at 391 steps."""
  return _cifar10_census([391])


def _cifar10_census(budgets=(391, 782, 1955)):
  """`(verdicts drawn, decided)` of the CIFAR-10 page at `budgets` (default: all three)."""
  from leae_jax.experiments import ladder  # pylint: disable=import-outside-toplevel
  return ladder.verdict_census(_cifar10_table(), ladder.LADDERS["cifar10"].all_claims,
                               list(budgets))[:2]


def _answers_on_both_datasets():
  """The last column of the CIFAR-10 page's "Against Fashion-MNIST" section, claim by claim."""
  from leae_jax.experiments import ladder  # pylint: disable=import-outside-toplevel
  lines = ladder.other_dataset_section(_cifar10_table(), ladder.LADDERS["cifar10"],
                                       os.path.join(ROOT, "docs", "results_cifar10"))
  return [line.rsplit("|", 2)[-2].strip() for line in lines if "` vs `" in line]


def _ladder_rungs():
  from leae_jax.experiments import ladder  # pylint: disable=import-outside-toplevel
  return ladder.LADDERS["fashion_mnist"].rungs


# (what is counted, a pattern whose group 1 is the stated number, the true number).
# Each pattern is searched in every document, with its whitespace runs made single
# spaces; every match must state the true number.
COUNTS = [
    ("the mutants of tests/mutants.py", r"\b(\d+) deliberate breakages\b",
     lambda: len(_mutants())),
    ("the mutants of tests/mutants.py", r"\ball (\d+) apply\b", lambda: len(_mutants())),
    ("the command lines of tests/cli_errors_test.py", r"\bruns (\d+) such command lines\b",
     lambda: len(_cli_cases())),
    ("the rungs with stored results in docs/results",
     r"\b(\d+) rungs (?:on Fashion-MNIST|× 3 seeds at 400)",
     lambda: len({rung for rung, _ in
                  _stored_ladder_results("") + _stored_ladder_results("h100")})),
    ("the rungs with stored results in docs/results_cifar10",
     r"\bCIFAR-10 \(JPEG q75 files\): (\d+) rungs ×", lambda: len(_cifar10_seeds_at(391))),
    ("the seeds every CIFAR-10 rung has at one epoch",
     r"\brungs × (\d+) seeds at 391 steps\b", lambda: min(_cifar10_seeds_at(391).values())),
    ("the CIFAR-10 five-epoch results stored",
     r"\bto 1955 steps \(5 epochs × 3 seeds: (\d+) results\)",
     lambda: sum(_cifar10_seeds_at(1955).values())),
    ("the verdicts the CIFAR-10 page draws at one epoch",
     r"\bAt one epoch the page draws (\d+) verdicts\b", lambda: _cifar10_census_at_one_epoch()[0]),
    ("the verdicts the CIFAR-10 page decides at one epoch",
     r"\bthe 2σ rule decides (\d+) of them\b", lambda: _cifar10_census_at_one_epoch()[1]),
    ("the verdicts the CIFAR-10 page draws over its three budgets",
     r"\bOver its three budgets it draws (\d+) verdicts\b", lambda: _cifar10_census()[0]),
    ("the verdicts the CIFAR-10 page decides over its three budgets",
     r"\bverdicts and decides (\d+)\b", lambda: _cifar10_census()[1]),
    ("the claims both ladders ask", r"\bOf the (\d+) claims both ladders ask\b",
     lambda: len(_answers_on_both_datasets())),
    ("the claims both datasets answer alike", r"\bthe two datasets answer (\d+) alike\b",
     lambda: sum(a in ("holds on both", "contradicted on both") for a in _answers_on_both_datasets())),
    ("the claims the two datasets answer oppositely", r"\balike and (\d+) oppositely\b",
     lambda: _answers_on_both_datasets().count("**differs**")),
    ("the claims whose answer flips between budgets on one dataset",
     r"\bon (\d+) a dataset's own answer flips between budgets\b",
     lambda: _answers_on_both_datasets().count("flips on one")),
    ("the claims decided on one dataset only", r"\band (\d+) (?:is|are) decided on one only\b",
     lambda: _answers_on_both_datasets().count("decided on one only")),
    ("the Fashion-MNIST ladder's rungs", r"\bladder now defines (\d+) rungs for Fashion-MNIST\b",
     lambda: len(_ladder_rungs())),
    ("the CPU's stored ladder results", r"\bThe CPU produced (\d+) of the stored results\b",
     lambda: len(_stored_ladder_results(""))),
    ("the H100's stored ladder results", r"\ba lent H100 produced (\d+)\b",
     lambda: len(_stored_ladder_results("h100"))),
]


def _stated(pattern):
  for document in DOCUMENTS:
    text = re.sub(r"\s+", " ", _read(document))
    for match in re.finditer(pattern, text):
      yield document, int(match.group(1)), text[max(0, match.start() - 60):match.end() + 60]


@pytest.mark.parametrize("what,pattern,true", COUNTS, ids=[c[1] for c in COUNTS])
def test_every_count_a_document_states_is_true(what, pattern, true):
  stated = list(_stated(pattern))
  assert stated, f"no document states {what} ({pattern!r}): drop the check or the pattern is wrong"
  wrong = [f"{doc}: states {n}, but {what} are {true()}: ...{context}..."
           for doc, n, context in stated if n != true()]
  assert not wrong, "\n".join(wrong)


def test_the_error_tests_sentence_names_every_program_it_runs():
  modules = sorted({f"leae_jax.{module}" for _, module, _, _ in _cli_cases()})
  for document, _, _ in _stated(r"\bruns (\d+) such command lines\b"):
    text = re.sub(r"\s+", " ", _read(document))
    sentence = text[text.index("such command lines"):][:400].split(". ")[0]
    assert [m for m in modules if f"`{m}`" not in sentence] == [], (document, sentence)


def test_the_mutation_table_has_a_row_for_every_mutant():
  rows = re.findall(r"^\| `([a-z0-9_]+)` \|", _read("docs/mutants.md"), re.M)
  assert sorted(rows) == sorted(m.name for m in _mutants())


def test_test_counts_are_dated_measurements():
  """The suite grows every week: a number of tests may be stated only as a dated measurement."""
  undated = []
  for document in DOCUMENTS:
    prose = "\n".join(CODE_SPAN.sub("", line) for _, line in _prose_lines(_read(document)))
    text = re.sub(r"\s+", " ", prose)
    for match in re.finditer(r"\b\d[\d,]* tests\b", text):
      if not re.search(r"\b20\d\d-\d\d-\d\d\b", text[max(0, match.start() - 40):match.start()]):
        undated.append(f"{document}: ...{text[max(0, match.start() - 60):match.end() + 20]}...")
  assert not undated, "\n".join(undated)
