#!/usr/bin/env python

# Deep Learning Homework 1

import argparse

import numpy as np
import matplotlib.pyplot as plt

import utils


class LinearModel(object):
    def __init__(self, n_classes, n_features, **kwargs):
        self.W = np.zeros((n_classes, n_features))

    def update_weight(self, x_i, y_i, **kwargs):
        raise NotImplementedError

    def train_epoch(self, X, y, **kwargs):
        for x_i, y_i in zip(X, y):
            self.update_weight(x_i, y_i, **kwargs)

    def predict(self, X):
        """X (n_examples x n_features)"""
        scores = np.dot(self.W, X.T)  # (n_classes x n_examples)
        predicted_labels = scores.argmax(axis=0)  # (n_examples)
        return predicted_labels

    def evaluate(self, X, y):
        """
        X (n_examples x n_features):
        y (n_examples): gold labels
        """
        y_hat = self.predict(X)
        n_correct = (y == y_hat).sum()
        n_possible = y.shape[0]
        return n_correct / n_possible


class Perceptron(LinearModel):
    def update_weight(self, x_i, y_i, **kwargs):
        """
        x_i (n_features): a single training example
        y_i (scalar): the gold label for that example
        other arguments are ignored
        """
        # Q1.1a
        scores = self.W @ x_i
        predicted = scores.argmax()
        if predicted == y_i:
            return
        self.W[y_i] = self.W[y_i] + x_i
        self.W[predicted] = self.W[predicted] - x_i


class LogisticRegression(LinearModel):
    def update_weight(self, x_i, y_i, learning_rate=0.001):
        """
        x_i (n_features): a single training example
        y_i: the gold label for that example
        learning_rate (float): keep it at the default value for your plots
        """
        # Q1.1b
        label_scores = np.expand_dims(self.W @ x_i, axis=1)  # (n_classes x 1)
        y_one_hot = np.zeros((self.W.shape[0], 1))
        y_one_hot[y_i] = 1
        # softmax, stable
        label_probabilities = np.exp(label_scores - label_scores.max())
        label_probabilities /= label_probabilities.sum()
        self.W += learning_rate * (y_one_hot - label_probabilities) @ np.expand_dims(x_i, axis=1).T


def softmax(z):
    e = np.exp(z - np.max(z))
    return e / e.sum()


class MLP(object):
    # Q3.2b. This MLP skeleton code allows the MLP to be used in place of the
    # linear models with no changes to the training loop or evaluation code
    # in main().
    def __init__(self, n_classes, n_features, hidden_size, n_layers):
        # Initialize an MLP with n_layers hidden layers (the homework: 1).
        sizes = [n_features] + [hidden_size] * n_layers + [n_classes]
        self.params = {"W": [], "B": []}
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.params["W"].append(np.random.normal(loc=0.1, scale=0.1, size=(n_out, n_in)))
            self.params["B"].append(np.zeros((n_out, 1)))

    def forward(self, x):
        """x (n_features x 1) -> pre-activations and activations of every layer."""
        hiddens = [x]
        zs = []
        n = len(self.params["W"])
        for i in range(n):
            z = self.params["W"][i] @ hiddens[-1] + self.params["B"][i]
            zs.append(z)
            if i < n - 1:
                hiddens.append(np.maximum(z, 0))
        return zs, hiddens

    def predict(self, X):
        # Compute the forward pass of the network. At prediction time, there is
        # no need to save the values of hidden nodes, whereas this is required
        # at training time.
        predicted = []
        for x in X:
            zs, _ = self.forward(x.reshape(-1, 1))
            predicted.append(np.argmax(zs[-1]))
        return np.array(predicted)

    def evaluate(self, X, y):
        """
        X (n_examples x n_features)
        y (n_examples): gold labels
        """
        # Identical to LinearModel.evaluate()
        y_hat = self.predict(X)
        n_correct = (y == y_hat).sum()
        n_possible = y.shape[0]
        return n_correct / n_possible

    def backward(self, y, zs, hiddens):
        probs = softmax(zs[-1])
        one_hot = np.zeros_like(probs)
        one_hot[y] = 1
        grad_z = probs - one_hot
        grads_W, grads_B = [], []
        for i in range(len(self.params["W"]) - 1, -1, -1):
            grads_W.insert(0, grad_z @ hiddens[i].T)
            grads_B.insert(0, grad_z)
            if i > 0:
                grad_h = self.params["W"][i].T @ grad_z
                grad_z = grad_h * (zs[i - 1] > 0).astype(float)
        return grads_W, grads_B

    def update_weight(self, x_i, y_i, learning_rate):
        zs, hiddens = self.forward(x_i.reshape(-1, 1))
        grads_W, grads_B = self.backward(y_i, zs, hiddens)
        for i in range(len(self.params["W"])):
            self.params["W"][i] = self.params["W"][i] - learning_rate * grads_W[i]
            self.params["B"][i] = self.params["B"][i] - learning_rate * grads_B[i]

    def train_epoch(self, X, y, learning_rate=0.001):
        for x_i, y_i in zip(X, y):
            self.update_weight(x_i, y_i, learning_rate)


def plot(epochs, valid_accs, test_accs):
    plt.xlabel('Epoch')
    plt.ylabel('Accuracy')
    plt.xticks(epochs)
    plt.plot(epochs, valid_accs, label='validation')
    plt.plot(epochs, test_accs, label='test')
    plt.legend()
    plt.show()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('model',
                        choices=['perceptron', 'logistic_regression', 'mlp'],
                        help="Which model should the script run?")
    parser.add_argument('-epochs', default=20, type=int,
                        help="""Number of epochs to train for. You should not
                        need to change this value for your plots.""")
    parser.add_argument('-hidden_size', type=int, default=200,
                        help="""Number of units in hidden layers (needed only
                        for MLP, not perceptron or logistic regression)""")
    parser.add_argument('-learning_rate', type=float, default=0.001,
                        help="""Learning rate for parameter updates (needed for
                        logistic regression and MLP, but not perceptron)""")
    opt = parser.parse_args()

    utils.configure_seed(seed=42)

    add_bias = opt.model != "mlp"
    data = utils.load_classification_data(bias=add_bias)
    train_X, train_y = data["train"]
    dev_X, dev_y = data["dev"]
    test_X, test_y = data["test"]

    n_classes = np.unique(train_y).size  # 10
    n_feats = train_X.shape[1]

    # initialize the model
    if opt.model == 'perceptron':
        model = Perceptron(n_classes, n_feats)
    elif opt.model == 'logistic_regression':
        model = LogisticRegression(n_classes, n_feats)
    else:
        model = MLP(n_classes, n_feats, opt.hidden_size, 1)
    epochs = np.arange(1, opt.epochs + 1)
    valid_accs = []
    test_accs = []
    for i in epochs:
        print('Training epoch {}'.format(i))
        train_order = np.random.permutation(train_X.shape[0])
        train_X = train_X[train_order]
        train_y = train_y[train_order]
        model.train_epoch(
            train_X,
            train_y,
            learning_rate=opt.learning_rate
        )
        valid_accs.append(model.evaluate(dev_X, dev_y))
        test_accs.append(model.evaluate(test_X, test_y))

    # plot
    plot(epochs, valid_accs, test_accs)


if __name__ == '__main__':
    main()
