package main

// causes says, per scenario, why saslgate misses a goal there (or what
// else a reader of the numbers must know). It is written by a person from
// profiles, not computed: edit it when you learn more. The report prints
// the text under the scenario's goals, in the place marked "Cause", and
// says "not yet known" where a goal is missed and no text is here.
var causes = map[string]string{}
