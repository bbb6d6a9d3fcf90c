"""The complaint desk: register from every channel, classify, assign, resolve within the
clocks' targets, archive; every step on a hash-chained record."""
