"""The usual Usage API documents, run without the GraphQL executor.

A client sends one mutation document over and over, with new variables. Each distinct document
text (with the operation name sent beside it) is looked at once: where it parses, validates
against the schema and is one `incrementCounter` or `setGauge` field whose selections are
plain `success` and `__typename` fields, a plan of it is kept. A call with a plan has its
variables and the field's arguments coerced by graphql-core's own functions, as the executor
coerces them, runs the field's own code (`schema.report`), and gets the data or the located
error the executor would give. Anything else (no plan, a variable that does not coerce) is
left to the executor, which answers it as before: nothing has run by then.

Where every variable of a plan is a scalar without a default, and a call gives each one a plain
JSON scalar, each value is coerced by its scalar type's own `coerce_input_value`, the function
graphql-core's walk over the variables ends in (`_scalars`); any other call, or a value that
does not coerce so, takes the walk, which words the refusal.

Through Strawberry's executor, an `incrementCounter` call cost about 120 µs of the event loop's
CPU before its resolver ran (variable coercion, the executor's and Strawberry's per-call
objects, the extensions' hooks); a plan's call, a fraction of that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLScalarType,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    get_named_type,
    get_nullable_type,
    located_error,
    specified_rules,
)
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import (
    VariableValues,
    VariableValueSource,
    get_argument_values,
    get_variable_values,
)
from strawberry.types import ExecutionResult

from meterworks.facades.salesbricks.schema import (
    REMEMBERED_DOCUMENTS,
    UsageContext,
    parsed,
    report,
    schema,
    validation_errors,
)
from meterworks.facades.salesbricks.translate import BrickCall

# The mutations a plan runs, and the argument each takes its quantity from.
_CALLS = {
    "incrementCounter": (BrickCall.INCREMENT_COUNTER, "count"),
    "setGauge": (BrickCall.SET_GAUGE, "value"),
}
_RULES = tuple(specified_rules)
# The Python types of the JSON scalars a variable's value may be, for `_scalars`.
_PLAIN = frozenset({str, int, float, bool})


@dataclass(frozen=True, slots=True)
class _Plan:
    operation: OperationDefinitionNode
    field_node: FieldNode
    field: GraphQLField
    response_key: str
    call: BrickCall
    quantity_argument: str
    # The field's answer as the executor gives it: each response key of its selections, in
    # order, with its value (`success`: true; `__typename`: the response type's name).
    answer: tuple[tuple[str, Any], ...]
    # Each variable's name, signature and scalar type, where all are scalars without a
    # default; else None (`_scalars`).
    scalars: tuple[tuple[str, GraphQLVariableSignature, GraphQLScalarType], ...] | None


_plans: dict[tuple[str, str | None], _Plan | None] = {}


async def execute(payload: dict[str, Any], context: UsageContext) -> ExecutionResult | None:
    """The call's result, as the executor would give it; None where the executor is to run
    it (then nothing has run)."""
    plan = _plan_of(payload["query"], payload.get("operationName"))
    if plan is None:
        return None
    inputs = payload.get("variables") or {}
    variables = _scalars(plan, inputs) or get_variable_values(
        schema._schema, plan.operation.variable_definitions or (), inputs
    )
    if isinstance(variables, list):  # not coerced: the executor says why
        return None
    try:
        arguments = get_argument_values(plan.field, plan.field_node, variables)
    except GraphQLError:
        return None
    try:
        await report(
            context,
            plan.response_key,
            plan.call,
            arguments["timestamp"],
            arguments["subscriptionId"],
            arguments["brickId"],
            arguments[plan.quantity_argument],
        )
    except Exception as exc:
        # The field is non-null: its error leaves the whole answer's data null.
        error = located_error(exc, [plan.field_node], [plan.response_key])
        return ExecutionResult(data=None, errors=[error])
    return ExecutionResult(data={plan.response_key: dict(plan.answer)}, errors=None)


def _scalars(plan: _Plan, inputs: Any) -> VariableValues | None:
    """The variables as graphql-core's `get_variable_values` coerces them, where each is a
    scalar given as a plain JSON scalar that its type coerces; None for any other call."""
    if plan.scalars is None or not isinstance(inputs, dict):
        return None
    coerced: dict[str, Any] = {}
    sources: dict[str, VariableValueSource] = {}
    for name, signature, scalar in plan.scalars:
        value = inputs.get(name)
        if type(value) not in _PLAIN:  # missing, null, a list or an object
            return None
        try:
            coerced_value = scalar.coerce_input_value(value)
        except Exception:  # the walk words why
            return None
        if coerced_value is Undefined:
            return None
        coerced[name] = coerced_value
        sources[name] = VariableValueSource(signature, value)
    return VariableValues(sources=sources, coerced=coerced)


def _scalar_variables(
    operation: OperationDefinitionNode,
) -> tuple[tuple[str, GraphQLVariableSignature, GraphQLScalarType], ...] | None:
    found = []
    for definition in operation.variable_definitions or ():
        signature = get_variable_signature(schema._schema, definition)
        if isinstance(signature, GraphQLError) or definition.default_value is not None:
            return None
        scalar = get_nullable_type(signature.type)
        if not isinstance(scalar, GraphQLScalarType):
            return None
        found.append((signature.name, signature, scalar))
    return tuple(found)


def _plan_of(query: str, operation_name: str | None) -> _Plan | None:
    key = (query, operation_name)
    if key in _plans:
        return _plans[key]
    try:
        plan = _planned(query, operation_name)
    except Exception:  # whatever the executor makes of such a document, it answers
        plan = None
    if len(_plans) >= REMEMBERED_DOCUMENTS:
        _plans.clear()
    _plans[key] = plan
    return plan


def _planned(query: str, operation_name: str | None) -> _Plan | None:
    document = parsed(query)
    if validation_errors(query, document, _RULES):
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != len(document.definitions):  # fragments
        return None
    if operation_name is None:
        if len(operations) != 1:
            return None
        (operation,) = operations
    else:
        named = [o for o in operations if o.name is not None and o.name.value == operation_name]
        if len(named) != 1:
            return None
        (operation,) = named
    if operation.operation is not OperationType.MUTATION or operation.directives:
        return None
    if any(definition.directives for definition in operation.variable_definitions or ()):
        return None
    selections = operation.selection_set.selections
    if len(selections) != 1:
        return None
    (field_node,) = selections
    if not isinstance(field_node, FieldNode) or field_node.directives:
        return None
    found = _CALLS.get(field_node.name.value)
    mutation_type = schema._schema.mutation_type
    if found is None or mutation_type is None or field_node.selection_set is None:
        return None
    call, quantity_argument = found
    field = mutation_type.fields[field_node.name.value]
    type_name = get_named_type(field.type).name
    answer: dict[str, Any] = {}
    for selection in field_node.selection_set.selections:
        if (
            not isinstance(selection, FieldNode)
            or selection.directives
            or selection.arguments
            or selection.selection_set is not None
        ):
            return None
        name = selection.name.value
        if name == "success":
            value: Any = True
        elif name == "__typename":
            value = type_name
        else:
            return None
        answer.setdefault((selection.alias or selection.name).value, value)
    return _Plan(
        operation=operation,
        field_node=field_node,
        field=field,
        response_key=(field_node.alias or field_node.name).value,
        call=call,
        quantity_argument=quantity_argument,
        answer=tuple(answer.items()),
        scalars=_scalar_variables(operation),
    )
