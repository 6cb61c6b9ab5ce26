"""A simulator whose call sites exercise every part of the address scheme; its source text is
what the addresses depend on, so it lives in its own file shared by every interpreter."""


def helper(sample):
    return sample("h")


def model(sample):
    xs = [sample("comprehension") for _ in range(2)]
    for _ in range(2):
        xs.append(sample("loop"))
    xs.append(helper(sample))
    xs.append(helper(sample))
    xs.append(sum(sample("generator") for _ in range(2)))
    xs.append(sample(
        "multi-line call"))
    xs.append({k: sample("dict comprehension") for k in range(1)}[0])
    xs.append((lambda: sample("lambda"))())
    return xs
