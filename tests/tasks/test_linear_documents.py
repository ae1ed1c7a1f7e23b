"""Every GraphQL document the Linear client sends validates against Linear's real
published schema, so a renamed field or argument fails here and not in production."""

import graphql
import pytest

from tasks.linear_client import DOCUMENTS, schema_path


@pytest.fixture(scope="module")
def schema() -> graphql.GraphQLSchema:
    path = schema_path()
    if not path.is_file():
        pytest.skip(
            f"Linear's schema is not at {path}; set LINEAR_SCHEMA_PATH to a copy of "
            "Linear's schema.graphql to validate the client's documents."
        )
    return graphql.build_schema(path.read_text(encoding="utf-8"))


def test_documents_are_collected() -> None:
    assert len(DOCUMENTS) >= 10
    assert all(isinstance(text, str) and text.strip() for text in DOCUMENTS.values())


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_validates_against_linear_schema(
    schema: graphql.GraphQLSchema, name: str
) -> None:
    document = graphql.parse(DOCUMENTS[name])
    errors = graphql.validate(schema, document)
    assert not errors, f"{name}: " + "; ".join(e.message for e in errors)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_has_one_named_operation(name: str) -> None:
    # One named operation per document keeps Linear's logs and the stand-in's
    # fault matching unambiguous.
    document = graphql.parse(DOCUMENTS[name])
    operations = [
        d
        for d in document.definitions
        if isinstance(d, graphql.OperationDefinitionNode)
    ]
    assert len(operations) == 1
    assert operations[0].name is not None
