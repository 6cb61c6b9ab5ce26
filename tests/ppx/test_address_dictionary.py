"""The address dictionary: aliases, stable ids on disk, several processes sharing one file."""

from __future__ import annotations

import json
import os

import pytest

from etalumis_core.ppx.addresses import AddressDictionary, function_name, make_alias, split_frames

FRONT = "ppx::sample(ppx::Uniform const&, char const*)+0x3a"
OUTER = ("SHERPA::Hadron_Decays::Treat(ATOOLS::Blob_List*)+0x112; "
         "SHERPA::Sherpa::GenerateOneEvent(bool)+0x1a3; main+0x8d; __libc_start_main+0xf0; "
         "_start+0x2a")


def stack(leaf: str, k: int = 0) -> str:
    return f"[{FRONT}; {leaf}; HADRONS::Tau_Pseudo::Calculate(bool)+{hex(0x40 + k)}; {OUTER}]"


RAMBO = "PHASIC::Rambo::GenerateWeight(ATOOLS::Vec4<double>*, PHASIC::Cut_Data*)+0x1a3"


def test_alias_is_the_innermost_frame_outside_the_front_end() -> None:
    assert make_alias(stack(RAMBO)) == "Rambo::GenerateWeight"
    assert make_alias(stack(RAMBO), parts=3) == "PHASIC::Rambo::GenerateWeight"
    # Outermost-first stacks (the other convention) read from the other end.
    reversed_stack = "; ".join(reversed(split_frames(stack(RAMBO))))
    assert make_alias(reversed_stack, innermost_first=False) == "Rambo::GenerateWeight"
    # Templates, const qualifiers, return types.
    assert function_name("void ns::Foo<std::vector<int, std::allocator<int> > >::bar(int) const+0x10") \
        == "ns::Foo::bar"
    # A plain (non-stack) address is its own alias, kept safe for keys and file names.
    assert make_alias("tau_px") == "tau_px"
    assert make_alias("weird/name__with__dunder") == "weird_name_with_dunder"
    assert "__" not in make_alias("[__libc_start_main+0x1; ns::__hidden__::f+0x2]")


def test_ids_are_stable_through_the_file_and_new_addresses_are_appended(tmp_path) -> None:
    path = tmp_path / "addresses.jsonl"
    first = AddressDictionary(path)
    addresses = [stack(RAMBO, k) for k in range(5)]
    compact = [first.compact(a) for a in addresses]
    assert compact == [f"a{i}:Rambo::GenerateWeight" for i in range(5)]
    assert len(addresses[0]) > 250 and len(compact[0]) < 30
    # The file is written as the dictionary grows: nothing to save explicitly.
    second = AddressDictionary.load(path)
    assert [second.compact(a) for a in reversed(addresses)] == list(reversed(compact))
    assert len(second) == 5
    new = stack("HADRONS::Tau_Decay_MEs::VisibleFraction(double)+0x2e")
    assert second.compact(new) == "a5:Tau_Decay_MEs::VisibleFraction"
    third = AddressDictionary.load(path)
    assert third.entries() == second.entries()
    # The long form is recoverable from compact ids and from trace addresses.
    assert third.long("a3:Rambo::GenerateWeight") == addresses[3]
    assert third.long(5) == new
    assert third.expand("a2:Rambo::GenerateWeight__Uniform__7") == addresses[2] + "__Uniform__7"
    with pytest.raises(KeyError):
        third.long("a99:nothing")


def test_save_elsewhere_is_atomic_and_round_trips(tmp_path) -> None:
    d = AddressDictionary()  # in memory
    for k in range(20):
        d.compact(stack(RAMBO, k))
    target = d.save(tmp_path / "net" / "addresses.jsonl")
    assert sorted(os.listdir(target.parent)) == ["addresses.jsonl", "addresses.jsonl.lock"]
    lines = target.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "etalumis-address-dictionary"
    assert AddressDictionary.load(target).entries() == d.entries()


def test_processes_sharing_a_file_agree_on_every_id(tmp_path) -> None:
    # Two workers meeting addresses in different orders: ids follow first appearance anywhere.
    path = tmp_path / "addresses.jsonl"
    a, b = AddressDictionary(path), AddressDictionary(path)
    x, y, z = (stack(RAMBO, k) for k in range(3))
    assert a.compact(x) == "a0:Rambo::GenerateWeight"
    assert b.compact(y) == "a1:Rambo::GenerateWeight"   # b read a's entry first
    assert b.compact(x) == "a0:Rambo::GenerateWeight"
    assert a.compact(z) == "a2:Rambo::GenerateWeight"
    assert a.compact(y) == "a1:Rambo::GenerateWeight"
    assert AddressDictionary(path).entries() == a.entries()


def test_a_torn_last_line_is_ignored_and_overwritten(tmp_path) -> None:
    path = tmp_path / "addresses.jsonl"
    d = AddressDictionary(path)
    d.compact(stack(RAMBO, 0))
    with open(path, "ab") as f:   # a writer killed in the middle of an entry
        f.write(b'{"id": 1, "compact": "a1:X", "addr')
    fresh = AddressDictionary(path)
    assert len(fresh) == 1
    assert fresh.compact(stack(RAMBO, 1)) == "a1:Rambo::GenerateWeight"
    assert len(AddressDictionary(path)) == 2


def test_compact_strings_are_shared_not_copied() -> None:
    d = AddressDictionary()
    long = stack(RAMBO)
    copy = "".join(list(long))   # an equal string object, as each decoded message brings
    assert copy is not long
    assert d.compact(long) is d.compact(copy)
    assert len(d) == 1
